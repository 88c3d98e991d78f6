"""One module per benchmarked stage: each has its result (a :class:`bench.record.Record`) and
``run(ctx) -> result``; ``bench.run_all`` runs them in order, every stage on the lake the earlier left."""
