"""Serves moto's DynamoDB/SQS emulator on a free loopback port, one request at a time.

moto's own server handles requests on threads with no lock, and its TransactWriteItems copies whole
tables and restores them on cancellation, so concurrent transactions are not isolated there (stock 1
with 8 concurrent buyers sold 2 in 15 of 150 trials). Wrapping the WSGI app in one lock makes each
request atomic, as DynamoDB's transactions are.

moto's TransactWriteItems also backs up every table it touches with a deep copy before applying it, and
restores the copy if any action fails: a cost that grows with the table (a 2,000-item table made each
transaction take tens of milliseconds, and a sweep of 1,000 orders minutes). Since requests already run
one at a time, the launcher replaces that backup with one of just the items the transaction names,
restored the same way on failure: all or nothing, as before, at the cost of the items touched. And a
Query on the table's own key sorts every item of the table before picking the partition's; the
launcher hands it just the partition's items, which is all it would keep.

Prints the port on stdout, then serves until its stdin closes (the test process that started it died
or finished), so no emulator outlives its tests.
"""

import copy
import os
import sys
import threading

from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models.table import Table
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

_transact_write_items = dynamodb_models.DynamoDBBackend.transact_write_items
_deepcopy = copy.deepcopy


def _item_key(table, op):
    if "Key" in op:
        return op["Key"]
    item = op.get("Item", {})
    names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
    return {name: item[name] for name in names if name in item}


def transact_write_items(self, transact_items):
    """moto's transaction with an item-level backup instead of whole-table deep copies."""
    saved = []
    for entry in transact_items:
        _, op = next(iter(entry.items()))
        name = op.get("TableName")
        if not name or name not in self.tables:
            continue
        table = self.tables[name]
        key = _item_key(table, op)
        try:
            current = self.get_item(name, key)
        except Exception:  # a malformed key: moto itself refuses the transaction below
            continue
        saved.append((name, key, None if current is None else current.to_json()["Attributes"]))

    def shallow_tables(value, memo=None):
        # moto's own whole-table backup becomes a reference; the items saved above are the backup.
        if isinstance(value, dynamodb_models.Table):
            return value
        return _deepcopy(value, memo)

    copy.deepcopy = shallow_tables
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        for name, key, attributes in reversed(saved):
            if attributes is None:
                if self.get_item(name, key) is not None:
                    self.delete_item(name, key)
            else:
                self.put_item(name, attributes)
        raise
    finally:
        copy.deepcopy = _deepcopy


dynamodb_models.DynamoDBBackend.transact_write_items = transact_write_items

_query = Table.query


def query(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key, scan_index_forward,
          projection_expressions, index_name=None, *args, **kwargs):
    """moto's Query; on the table's own key, over the partition's items only (same order, same result)."""
    rest = (range_comparison, range_objs, limit, exclusive_start_key, scan_index_forward, projection_expressions,
            index_name) + args
    if index_name is not None or hash_key is None or not self.range_key_attr:
        return _query(self, hash_key, *rest, **kwargs)
    partition = self.items.get(hash_key, {})
    self.all_items = lambda: sorted(partition.values(), key=lambda item: (item.hash_key, item.range_key))
    try:
        return _query(self, hash_key, *rest, **kwargs)
    finally:
        del self.all_items


Table.query = query

app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()


def serialized(environ, start_response):
    with lock:
        # Consume the body inside the lock: the response may be generated lazily.
        return list(app(environ, start_response))


def exit_when_parent_goes():
    sys.stdin.read()
    os._exit(0)


def main():
    host = "127.0.0.1"
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = make_server(host, port, serialized, threaded=True)
    print(server.server_port, flush=True)
    if not (len(sys.argv) > 2 and sys.argv[2] == "--no-stdin-watch"):
        threading.Thread(target=exit_when_parent_goes, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
