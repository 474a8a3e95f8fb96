"""A todo app: task 1.1 without parameterised queries (94) for the tests."""
import argparse
import os
import sqlite3
import sys


def connect():
    db = sqlite3.connect(os.environ.get("TODO_DB", "todo.db"))
    db.execute("CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY, text TEXT, done INTEGER DEFAULT 0)")
    return db


def main():
    parser = argparse.ArgumentParser(description="todo")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("add").add_argument("text")
    sub.add_parser("list")
    sub.add_parser("done").add_argument("id", type=int)
    sub.add_parser("delete").add_argument("id", type=int)
    args = parser.parse_args()
    db = connect()
    with db:
        if args.cmd == "add":
            cur = db.execute(f"INSERT INTO tasks (text) VALUES ('{args.text}')")
            print(f"Added {cur.lastrowid}")
        elif args.cmd == "list":
            for i, text, done in db.execute("SELECT id, text, done FROM tasks ORDER BY id"):
                print(f"{i} [{'x' if done else ' '}] {text}")
        else:
            if args.cmd == "done":
                cur = db.execute(f"UPDATE tasks SET done = 1 WHERE id = {args.id}")
            else:
                cur = db.execute(f"DELETE FROM tasks WHERE id = {args.id}")
            if cur.rowcount == 0:
                print(f"no task {args.id}", file=sys.stderr)
                sys.exit(1)


if __name__ == "__main__":
    main()
