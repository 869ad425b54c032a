#!/bin/bash
# The GPU machine's environment for the harness (docs/recorder-cost.md), sourced from the
# repo root: BCC's .debs in $BCC (default .bcc), FlexGen's wheel in $WHL (default .whl)
# and, for before/after rows, an older checkout in $BASE. Afterwards /tmp/new/iommu-trace
# (this checkout) and /tmp/base/iommu-trace (BASE) record:
#   source recorder_cost/device_env.sh
#   python3 -m iommu_trace.recorder_cost.harness --recorder /tmp/new/iommu-trace ...
BCC=${BCC:-.bcc} WHL=${WHL:-.whl} BASE=${BASE:-}
export PYTHONUNBUFFERED=1
source "$BCC/unpack-bcc.sh" "$BCC" >/dev/null
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    "$WHL"/*.whl || echo FAILED pip
# a package named iommu_trace for each checkout, and a recorder command for each
wrapper() {  # NAME PKGROOT
    mkdir -p "/tmp/$1/pkg" && ln -sfn "$2" "/tmp/$1/pkg/iommu_trace"
    printf '%s\n' '#!/bin/sh' "PYTHONPATH=/tmp/$1/pkg:/tmp/site:\${PYTHONPATH:-} exec python3 -W ignore::SyntaxWarning \
-c 'from iommu_trace.cli import main; main()' \"\$@\"" >"/tmp/$1/iommu-trace"
    chmod +x "/tmp/$1/iommu-trace"
}
wrapper new "$PWD"
[ -n "$BASE" ] && wrapper base "$(cd "$BASE" && pwd)"
export PYTHONPATH=/tmp/new/pkg:/tmp/site:$PYTHONPATH
