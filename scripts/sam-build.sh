#!/usr/bin/env bash
# The packaging check: `sam build` exactly as docs/deploy.md runs it (each function's BuildMethod
# rust-cargolambda, cargo-lambda and Zig from PyPI on the PATH, no Docker), then proof that every function
# of the built template (.aws-sam/build/template.yaml) has its `bootstrap` where its CodeUri points, an
# executable ELF for the architecture asked.
#   scripts/sam-build.sh            arm64, as the template deploys by default
#   scripts/sam-build.sh x86_64     x86_64 (the machine has no aarch64 standard library, or you deploy x86_64)
# A cold build of the twelve functions takes minutes (release, fat LTO), so the test command runs only
# `sam validate --lint`; this is run by hand before a release (docs/deploy.md, "Building").
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-arm64}
source scripts/venv.sh scripts/requirements-package.txt
source scripts/venv.sh scripts/requirements-test.txt
export PATH="$PWD/.venv/bin:$PATH" SAM_CLI_TELEMETRY=0
rm -rf .aws-sam/build
sam build --beta-features --parameter-overrides "Architecture=$arch"
.venv/bin/python - "$arch" <<'PY'
import os, sys, yaml
arch = sys.argv[1]
machine = {"arm64": 0xB7, "x86_64": 0x3E}[arch]
class Loader(yaml.SafeLoader):
    pass
Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
built = yaml.load(open(".aws-sam/build/template.yaml"), Loader=Loader)
functions = {k: v for k, v in built["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}
assert len(functions) == 12, f"{len(functions)} functions in the built template"
for name, function in sorted(functions.items()):
    path = os.path.join(".aws-sam/build", function["Properties"]["CodeUri"], "bootstrap")
    head = open(path, "rb").read(20)
    assert head[:4] == b"\x7fELF", f"{name}: {path} is not an ELF binary"
    assert int.from_bytes(head[18:20], "little") == machine, f"{name}: {path} is not {arch}"
    assert os.access(path, os.X_OK), f"{name}: {path} is not executable"
    print(f"{name}: {path} ({os.path.getsize(path):,} B, {arch})")
print(f"sam build: all {len(functions)} bootstraps where the built template points")
PY
