#!/usr/bin/env bash
# Build the one-folder app bundle (dist/bpr-app) and run its own smoke check. Not part of CI: with
# torch and its CUDA libraries the build takes many minutes and several GB.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-bundle
.venv-bundle/bin/pip install -q -e . pyinstaller
start=$(date +%s)
.venv-bundle/bin/pyinstaller --noconfirm --clean pyinstaller.spec
echo "build: $(( $(date +%s) - start )) s; bundle size: $(du -sh dist/bpr-app | cut -f1)"
start=$(date +%s%N)
QT_QPA_PLATFORM=offscreen BPR_CONFIG_DIR="$(mktemp -d)" dist/bpr-app/bpr-app --self-test
echo "self-test passed in $(( ($(date +%s%N) - start) / 1000000 )) ms"
for i in 1 2 3; do
  start=$(date +%s%N)
  QT_QPA_PLATFORM=offscreen BPR_EXIT_AFTER_SHOWN=1 BPR_DATA_DIR="$(mktemp -d)" dist/bpr-app/bpr-app >/dev/null 2>&1
  echo "start-up to first window (run $i): $(( ($(date +%s%N) - start) / 1000000 )) ms"
done
