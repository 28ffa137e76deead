"""The image's HEALTHCHECK: healthy when one of the member's /livez URLs answers 200.

Needs nothing but python3's standard library. The URLs are the metrics port's and the client
port's of the image's default command; set ETCDPY_HEALTHCHECK_URLS (comma-separated) for others.
Kubernetes ignores HEALTHCHECK: the chart has its own probes.
"""

import os
import sys
import urllib.error
import urllib.request

DEFAULT_URLS = "http://127.0.0.1:9090/livez,http://127.0.0.1:2379/livez"
TIMEOUT_SECONDS = 3.0


def answers_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main() -> int:
    urls = [u.strip() for u in os.environ.get("ETCDPY_HEALTHCHECK_URLS", DEFAULT_URLS).split(",")]
    for url in filter(None, urls):
        if answers_ok(url):
            return 0
    print(f"no /livez answered 200: {', '.join(urls)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
