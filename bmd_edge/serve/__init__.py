"""`bmd-edge serve`: a DICOM node. Images in by C-STORE, SR (+ Secondary Capture) out.

config  — ServeConfig from flags or a TOML file
logs    — one JSON line per event, never PHI (a source is named by a hash of its UID)
spool   — the on-disk queues: received images not yet analysed, results not yet delivered
node    — the Storage SCP, the analysis workers, the sender with its retry loop, the health check
"""
