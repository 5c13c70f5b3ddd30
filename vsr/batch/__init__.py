"""Resumable batch processing (``vsr batch``): many inputs, one output folder, a ledger.

- ``vsr.batch.jobs``: ``JobSpec``, ``JobResult`` and ``run_job`` (pure, picklable: what an
  engine runs anywhere);
- ``vsr.batch.options``: ``BatchConfig``, the ``Engine`` protocol, ``job_params`` (the
  validated run options of every job) and ``make_engine``;
- ``vsr.batch.engine``: the driver ``run_batch`` / ``retry_batch`` / ``batch_status``;
  ``vsr.batch.local`` (``LocalEngine``: worker processes) and ``vsr.batch.ray_engine``
  run the jobs; ``vsr.batch.report`` and ``vsr.batch.progress`` show them;
- ``vsr.batch.inputs``: expanding inputs and mapping them to outputs under DIR;
- ``vsr.batch.ledger``: the SQLite ledger (``DIR/.vsr-batch.sqlite``);
- the command line, ``batch_app``, is in ``vsr.cli.batch`` (``python -m vsr.batch`` runs it).
"""
