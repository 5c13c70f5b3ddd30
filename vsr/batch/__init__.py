"""Resumable batch processing (``vsr batch``): many inputs, one output folder, a ledger.

- ``vsr.batch.jobs``: ``JobSpec``, ``JobResult`` and ``run_job`` (pure, picklable: what an
  engine runs anywhere);
- ``vsr.batch.engine``: the ``Engine`` protocol, the driver ``run_batch`` / ``retry_batch``
  / ``batch_status``, and ``LocalEngine`` (worker processes, ``vsr.batch.local``);
- ``vsr.batch.inputs``: expanding inputs and mapping them to outputs under DIR;
- ``vsr.batch.ledger``: the SQLite ledger (``DIR/.vsr-batch.sqlite``);
- the command line, ``batch_app``, is in ``vsr.cli.batch`` (``python -m vsr.batch`` runs it).
"""
