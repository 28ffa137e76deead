"""``python -m etcdpy.k8s.controllers NAME ...``: the example controllers (and the fake kubelet)
without the ``etcdpy`` command line, with etcdctl's connection flags."""

from __future__ import annotations

import sys

from etcdpy.k8s.controllers.entry import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
