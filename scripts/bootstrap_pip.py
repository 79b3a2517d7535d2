"""Installs pip into the running (pip-less) virtualenv from pip's own wheel on PyPI.

Debian's python3 ships without ensurepip unless python3-venv is installed, so `python3 -m venv` fails
there; scripts/test.sh then makes the venv with --without-pip and runs this. Only PyPI is contacted.
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request

PIP_VERSION = "24.3.1"


INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")


def main():
    # The Simple API (PEP 691, JSON form): the same index pip itself reads.
    req = urllib.request.Request(f"{INDEX}/pip/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        files = json.load(resp)["files"]
    name = f"pip-{PIP_VERSION}-py3-none-any.whl"
    wheel = next(f for f in files if f["filename"] == name)
    url = urllib.parse.urljoin(f"{INDEX}/pip/", wheel["url"])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, name)
        urllib.request.urlretrieve(url, path)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != wheel["hashes"]["sha256"]:
            sys.exit(f"{name}: sha256 {digest} does not match the index's {wheel['hashes']['sha256']}")
        # A pip wheel can run itself: python pip.whl/pip install ...
        subprocess.run([sys.executable, os.path.join(path, "pip"), "install", "--quiet", path], check=True)


if __name__ == "__main__":
    main()
