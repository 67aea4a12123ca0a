"""The bundle: the folder an app ships, and the contract with it.

  manifest.py   Manifest: typed manifest.json (schema 1), validated on read; manifest.sha256's line
  writer.py     BundleWriter: files into a temporary sibling folder, renamed into place at the end
  bundle.py     open_bundle, the trust boundary: digest, schema, containment, hashes; programs, golden cases, plan
  verify.py     verify_bundle: hashes, then each program re-run on its golden input
  runner.py     BundleGraphs: a bundle's three programs in their runtime, for the sampling loop
"""
