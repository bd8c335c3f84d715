"""The demo's shop traffic: checkouts, payments and status changes on the source while
it is being migrated, so the live part of the migration has something to replay."""

from __future__ import annotations

import random
import threading
from typing import Any

import psycopg


class ShopTraffic(threading.Thread):
    """Writes realistic transactions until stopped; counts them."""

    def __init__(self, uri: str, *, seed: int = 42, pause: float = 0.002) -> None:
        super().__init__(name="demo-traffic", daemon=True)
        self.uri = uri
        self.rng = random.Random(seed)
        self.pause = pause
        self.stop_event = threading.Event()
        self.transactions = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.uri, autocommit=True) as conn:
                limits = conn.execute(
                    "SELECT (SELECT max(id) FROM shop.customers), "
                    "(SELECT max(id) FROM shop.products)"
                ).fetchone()
                assert limits is not None
                customers, products = int(limits[0]), int(limits[1])
                while not self.stop_event.is_set():
                    self._one(conn, customers, products)
                    self.transactions += 1
                    self.stop_event.wait(self.pause)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def _one(self, conn: psycopg.Connection[Any], customers: int, products: int) -> None:
        rng = self.rng
        roll = rng.random()
        with conn.transaction():
            if roll < 0.6:  # a checkout
                customer = rng.randint(1, customers)
                row = conn.execute(
                    "INSERT INTO shop.orders (customer_id, status, ordered_at, note) "
                    "VALUES (%s, 'new', now(), %s) RETURNING id",
                    (customer, rng.choice([None, "leave at the door", "gift: no invoice"])),
                ).fetchone()
                assert row is not None
                for line in range(1, rng.randint(2, 4)):
                    product = rng.randint(1, products)
                    quantity = rng.randint(1, 5)
                    conn.execute(
                        "INSERT INTO shop.order_items (order_id, line_no, product_id, quantity, "
                        "unit_price, description, warehouse, added_at) "
                        "SELECT %s, %s, id, %s, price, name, 'WH-' || (id %% 5), now() "
                        "FROM shop.products WHERE id = %s",
                        (row[0], line, quantity, product),
                    )
                    conn.execute(
                        "UPDATE shop.products SET stock = stock - %s WHERE id = %s",
                        (quantity, product),
                    )
                conn.execute(
                    "UPDATE shop.customers SET loyalty_points = loyalty_points + 10 WHERE id = %s",
                    (customer,),
                )
            elif roll < 0.85:  # an order moves on
                conn.execute(
                    "UPDATE shop.orders SET status = CASE status WHEN 'new' THEN 'paid' "
                    "WHEN 'paid' THEN 'shipped' ELSE 'delivered' END::shop.order_status "
                    "WHERE id = (SELECT max(id) - %s FROM shop.orders)",
                    (rng.randint(0, 50),),
                )
            elif roll < 0.95:  # a gift card is used (payments feed a materialized view
                # refreshed nightly on the source: new ones would make it stale)
                conn.execute(
                    "UPDATE shop.gift_cards SET balance = greatest(balance - 5, 0) "
                    "WHERE code = (SELECT code FROM shop.gift_cards ORDER BY code OFFSET %s "
                    "LIMIT 1)",
                    (rng.randint(0, 249),),
                )
            else:  # a customer changes their mind about one line
                conn.execute(
                    "DELETE FROM shop.order_items WHERE (order_id, line_no) = "
                    "(SELECT order_id, max(line_no) FROM shop.order_items WHERE order_id = "
                    "(SELECT max(id) - %s FROM shop.orders) GROUP BY order_id)",
                    (rng.randint(0, 20),),
                )

    def finish(self) -> int:
        self.stop_event.set()
        self.join(timeout=30)
        if self.error is not None:
            raise self.error
        return self.transactions
