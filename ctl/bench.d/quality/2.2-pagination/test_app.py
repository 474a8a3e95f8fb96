import unittest

from app import app


class ItemsTest(unittest.TestCase):
    def setUp(self):
        self.client = app.test_client()

    def test_get_item(self):
        r = self.client.get("/items/3")
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.get_json()["name"], "item 3")

    def test_missing_item(self):
        self.assertEqual(self.client.get("/items/99").status_code, 404)


if __name__ == "__main__":
    unittest.main()
