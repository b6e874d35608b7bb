"""Adapters between a hospital's PACS and a bundle: the DICOMweb client and the DICOM network node.

No model logic lives here: studies are fetched or received, the series a model takes is chosen by the bundle's
rules (:mod:`.rules`), ``bundle.predict`` makes the prediction, and :mod:`.results` turns it into DICOM objects
(SEG, Secondary Capture, SR) that go back next to the study.

- :mod:`.dicomweb`: QIDO-RS search, WADO-RS retrieve, STOW-RS store (``dicomweb-client``), with auth and retries.
- :mod:`.studies`: ``medlens pacs run``: search, choose, predict, push.
- :mod:`.node`: ``medlens listen``: a Storage SCP (``pynetdicom``) whose spool and journal (:mod:`.spool`,
  :mod:`.journal`) make every received series finish exactly once; results go on by C-STORE (:mod:`.sender`).
"""
