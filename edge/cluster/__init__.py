"""edge's work spread over a Ray cluster (the optional extra `edge[ray]`): the same commands, their work as tasks.

  session.py      ray_session(address) -> RaySession: an embedded local Ray, or a running cluster joined; workers
                  built once (map_on_workers) or plain tasks (remote: edge matrix's entries)
  check.py        `edge check --ray`: the evaluation pairs sharded over tasks, merged as the serial run merges them
  sensitivity.py  `edge sensitivity --ray`: the variants shared out over tasks

Tasks name their inputs by path (bundles, photographs, checkpoints), so the workers must see the same files
(one machine, or a shared folder) and run the same edge: nothing big is pickled through the driver.
"""
