from flask import Flask, jsonify

app = Flask(__name__)

ITEMS = [{"id": i, "name": f"item {i}"} for i in range(1, 51)]


@app.get("/items")
def list_items():
    return jsonify({"items": ITEMS})


@app.get("/items/<int:item_id>")
def get_item(item_id):
    for item in ITEMS:
        if item["id"] == item_id:
            return jsonify(item)
    return jsonify({"error": "not found"}), 404
