"""Running medlens work on Ray (DESIGN.md, "Scales out on existing engines"): connecting to a cluster or starting a
local one (:mod:`medlens.cluster.session`), and the search space of ``medlens tune``
(:mod:`medlens.cluster.search_space`). Ray is imported only here and in the workflows that use it, so the
single-machine path needs none of it."""
