"""Which deliveries a channel may acknowledge now, and in how few frames: never one whose work
did not finish, whatever the order in which the work finishes."""

from __future__ import annotations

import random

from pingtower.common.messaging.acknowledgements import Ack, AckLedger


def ledger(delivered: int, *, hold_limit: int = 100) -> AckLedger:
    book = AckLedger(hold_limit=hold_limit)
    for tag in range(1, delivered + 1):
        book.delivered(tag)
    return book


def test_deliveries_finished_in_order_are_acknowledged_by_one_multiple_ack() -> None:
    book = ledger(5)
    for tag in range(1, 6):
        book.finished(tag)

    assert book.take() == [Ack(5, multiple=True)]
    assert book.take() == []
    assert book.held == 0


def test_a_running_delivery_holds_back_the_finished_ones_above_it() -> None:
    book = ledger(5)
    for tag in (1, 2, 4, 5):
        book.finished(tag)

    assert book.take() == [Ack(2, multiple=True)]  # 3 is still running
    assert book.held == 2

    book.finished(3)
    assert book.take() == [Ack(5, multiple=True)]


def test_held_deliveries_are_acknowledged_one_by_one_when_forced() -> None:
    book = ledger(5)
    for tag in (2, 4, 5):
        book.finished(tag)

    assert book.take(force=True) == [Ack(2, False), Ack(4, False), Ack(5, False)]
    assert book.held == 0

    # Once 1 is done, the run from the bottom passes over them without acknowledging them again.
    book.finished(1)
    assert book.take() == [Ack(1, multiple=True)]
    book.delivered(6)
    book.finished(3)
    book.finished(6)
    assert book.take() == [Ack(6, multiple=True)]


def test_past_the_hold_limit_the_finished_ones_are_acknowledged_one_by_one() -> None:
    book = ledger(4, hold_limit=2)
    book.finished(2)
    assert book.take() == []  # one held, under the limit
    book.finished(3)
    assert book.take() == [Ack(2, False), Ack(3, False)]


def test_a_delivery_settled_on_its_own_is_never_covered_but_does_not_block() -> None:
    book = ledger(4)
    book.finished(1)
    book.finished(3)
    book.finished(4)
    assert book.take() == [Ack(1, multiple=True)]  # 2 is still running

    book.settled(2)  # its nack was sent
    assert book.take() == [Ack(4, multiple=True)]


def test_a_tag_never_reported_as_delivered_stops_the_run() -> None:
    book = AckLedger(hold_limit=100)
    for tag in (1, 3):  # 2 was delivered by the broker but never reached us
        book.delivered(tag)
        book.finished(tag)

    assert book.take() == [Ack(1, multiple=True)]
    assert book.take(force=True) == [Ack(3, False)]


def test_random_finishing_orders_acknowledge_each_finished_delivery_exactly_once() -> None:
    rng = random.Random(7)
    for _ in range(200):
        count = rng.randint(1, 60)
        book = ledger(count, hold_limit=rng.randint(1, 10))
        order = list(range(1, count + 1))
        rng.shuffle(order)
        finished: set[int] = set()
        acknowledged: set[int] = set()
        for step, tag in enumerate(order):
            if rng.random() < 0.1:
                book.settled(tag)  # a nack, settled apart
            else:
                book.finished(tag)
                finished.add(tag)
            force = rng.random() < 0.2 or step == count - 1
            for ack in book.take(force=force):
                covers = range(1, ack.tag + 1) if ack.multiple else [ack.tag]
                newly = {t for t in covers if t not in acknowledged and t in finished}
                unfinished = {
                    t for t in covers if t not in finished and t not in acknowledged
                } - set(order[: step + 1])
                assert not unfinished, f"acknowledged {unfinished} before they finished"
                if not ack.multiple:
                    assert ack.tag not in acknowledged, "acknowledged twice"
                assert ack.tag in newly, "an ack must name a delivery not yet acknowledged"
                acknowledged |= newly
        assert acknowledged == finished
        assert book.held == 0
