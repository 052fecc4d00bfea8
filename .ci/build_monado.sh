#!/usr/bin/env bash
# Build Monado (the open-source OpenXR runtime) from the source snapshot in ../shared/vendor/
# into a cache folder keyed by the tarball's hash, and print the runtime manifest's path.
#
#   .ci/build_monado.sh [TARBALL]      → prints /…/monado-<hash>/build/openxr_monado-dev.json
#
# In-process runtime (no service), simulated HMD, null and XCB compositors, and the qwerty
# driver (SDL2: a debug window that turns keyboard/mouse events into two simple controllers).
# The tarball: the argument, else $EXPOSURE_SHARED/vendor (default ../shared beside the repo).
# Exits 3 with a message on stderr when there is no tarball (a fresh clone): the headset tests
# then skip with a reason. Cache root: $EXPOSURE_CI_CACHE, else ~/.cache/exposure-ci.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tarball="${1:-}"
if [ -z "$tarball" ]; then
  shared="${EXPOSURE_SHARED:-$here/../../shared}"
  tarball="$(ls "$shared"/vendor/monado-*.tar.xz 2>/dev/null | head -n1 || true)"
fi
if [ -z "$tarball" ] || [ ! -f "$tarball" ]; then
  echo "monado: no source tarball (../shared/vendor/monado-*.tar.xz); headset tests will skip" >&2
  exit 3
fi
hash="$(sha256sum "$tarball" | cut -c1-16)"
root="${EXPOSURE_CI_CACHE:-$HOME/.cache/exposure-ci}/monado-$hash"
manifest="$root/build/openxr_monado-dev.json"
if [ -f "$manifest" ] && [ -f "$root/build/src/xrt/targets/openxr/libopenxr_monado.so" ]; then
  echo "$manifest"
  exit 0
fi
mkdir -p "$root"
name="$(basename "$tarball" .tar.xz)"
[ -d "$root/$name" ] || tar -xJf "$tarball" -C "$root"
cmake -G Ninja -S "$root/$name" -B "$root/build" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_TESTING=OFF -DXRT_BUILD_SAMPLES=OFF -DXRT_FEATURE_SERVICE=OFF \
  -DXRT_FEATURE_STEAMVR_PLUGIN=OFF -DXRT_MODULE_MONADO_CLI=OFF -DXRT_MODULE_MONADO_GUI=OFF \
  -DXRT_MODULE_AUX_VIVE=OFF -DXRT_MODULE_COMPOSITOR_NULL=ON -DXRT_BUILD_DRIVER_SIMULATED=ON \
  -DXRT_BUILD_DRIVER_QWERTY=ON -DXRT_FEATURE_DEBUG_GUI=ON \
  -DXRT_BUILD_DRIVER_NS=OFF -DXRT_BUILD_DRIVER_WMR=OFF -DXRT_BUILD_DRIVER_TWRAP=OFF \
  -DXRT_BUILD_DRIVER_REMOTE=OFF -DXRT_BUILD_DRIVER_ROKID=OFF -DXRT_BUILD_DRIVER_VIVE=OFF \
  -DXRT_BUILD_DRIVER_RIFT_S=OFF -DXRT_BUILD_DRIVER_PSVR=OFF -DXRT_BUILD_DRIVER_XREAL_AIR=OFF \
  -DXRT_BUILD_DRIVER_HDK=OFF -DXRT_BUILD_DRIVER_HYDRA=OFF -DXRT_BUILD_DRIVER_PSMV=OFF \
  -DXRT_BUILD_DRIVER_PSSENSE=OFF -DXRT_FEATURE_WINDOW_PEEK=OFF >"$root/configure.log" 2>&1 \
  || { echo "monado: configure failed, see $root/configure.log" >&2; exit 1; }
ninja -C "$root/build" -j"$(nproc)" openxr_monado >"$root/build.log" 2>&1 \
  || { echo "monado: build failed, see $root/build.log" >&2; exit 1; }
echo "$manifest"
