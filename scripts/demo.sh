#!/usr/bin/env bash
# `make demo`: run ckpttool on the bundled fixtures, showing a resumable run, an export, damage and an attack.
set -u
BIN=${1:-.venv/bin}
CK="$BIN/ckpttool"
F=fixtures
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; echo "[exit $?]"; }

step "$CK" inspect "$F/seed_bundle.pth"
step "$CK" inspect "$F/gpt_sovits/logs_s2_v2/G_233333333333.pth"
step "$CK" inspect "$F/gpt_sovits/SoVITS_weights_v2Pro/demo_e8_s144.pth" --require optimizer
step "$CK" diff "$F/gpt_sovits/variants/G_inter192.pth" "$F/gpt_sovits/variants/G_inter256.pth"
step "$CK" migrate "$F/gpt_sovits/variants/G_inter192.pth" -o "${TMPDIR:-/tmp}/ckpttool-demo-G.pth" --force \
  --set model.inter_channels=256 --set model.gin_channels=12
step "$CK" verify-resume "$F/seed_bundle.pth"
step "$CK" verify-resume "$F/gpt_sovits/logs_s2_v2/G_233333333333.pth" "$F/gpt_sovits/logs_s2_v2/D_233333333333.pth"
step "$CK" inspect "$F/truncated.pth"
step "$CK" inspect "$F/malicious.pth" --json
exit 0
