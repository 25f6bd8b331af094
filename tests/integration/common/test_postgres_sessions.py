"""What `db.create_engine` sets on every PostgreSQL session it opens."""

from __future__ import annotations

from sqlalchemy import text

from pingtower.common.db import create_engine


async def test_sessions_run_without_jit_even_for_a_statement_past_its_cost(pg_url: str) -> None:
    engine = create_engine(pg_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("SHOW jit"))).scalar_one() == "off"
            # A statement the planner estimates past jit_above_cost (100,000 by default) is
            # still planned without compiling (EXPLAIN shows a JIT section when it would compile).
            plan = "\n".join(
                row[0]
                for row in await connection.execute(
                    text(
                        "EXPLAIN SELECT count(*) FROM generate_series(1, 100000) a "
                        "CROSS JOIN generate_series(1, 100) b WHERE a + b > 0"
                    )
                )
            )
    finally:
        await engine.dispose()
    estimated = float(plan.split("cost=", 1)[1].split("..", 1)[1].split(" ", 1)[0])
    assert estimated > 100_000, plan
    assert "JIT:" not in plan, plan
