"""The bundle: the folder an app ships, and the contract with it.

  manifest.py   Manifest: typed manifest.json (schema 1), validated on read
  writer.py     BundleWriter: files into a temporary sibling folder, renamed into place at the end
  bundle.py     open_bundle: read, validate, check hashes; the golden cases; the sampling plan
  verify.py     verify_bundle: hashes, then each program re-run on its golden input
  runner.py     BundleGraphs: a bundle's three programs in their runtime, for the sampling loop
"""
