#!/usr/bin/env bash
# Build the STAND-IN Intel Gaudi APT repository used by the Molecule scenario habana_driver.
#
# The repository carries packages with the vendor's names and versions (habanalabs-firmware,
# habanalabs-dkms, ... at 1.22.0-740 and 1.22.2-32) that contain no vendor code: a note file
# each, and in habanalabs-firmware-tools a stand-in hl-smi that prints the real output
# formats for fake Gaudi3 devices. The stand-in habanalabs-dkms builds nothing. Two OS
# stand-ins (standin-linux-headers, standin-dkms) replace the kernel headers and dkms, which
# the test container cannot use. The Release file is signed with a GPG key generated for the
# test (no passphrase), exported next to it as habana-standin.asc.
#
# Usage: scripts/build-standin-habana-repo.sh [OUTPUT_DIR]
# Without OUTPUT_DIR the repository is built in the cache directory, keyed by the inputs, and
# reused. Prints the path of repo.tar.gz (the repository root packed for copying) last.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
hl_smi="$root/tests/standins/hl_smi.py"
suite="${HABANA_STANDIN_SUITE:-jammy}"
# version:fw release pairs; stand-in values, not the vendor's firmware numbers
versions="${HABANA_STANDIN_VERSIONS:-1.22.0-740:61.3.2 1.22.2-32:61.5.0}"
vendor_packages="habanalabs-firmware habanalabs-dkms habanalabs-thunk habanalabs-graph
habanalabs-rdma-core habanalabs-firmware-tools habanalabs-qual habanalabs-container-runtime"

for tool in gpg dpkg-deb dpkg-scanpackages gzip sha256sum md5sum tar; do
  command -v "$tool" >/dev/null 2>&1 || { echo "ERROR: $tool is required" >&2; exit 1; }
done

key="$(cat "$0" "$hl_smi" | sha256sum | cut -c1-16)-$(printf '%s|%s' "$suite" "$versions" | sha256sum | cut -c1-8)"
if [[ $# -ge 1 ]]; then
  out="$1"
else
  cache="${GVL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gaudi-vllm-lmcache}/habana-standin-repo"
  out="$cache/$key"
  if [[ -s "$out/repo.tar.gz" && -e "$out/.complete" ]]; then
    echo "$out/repo.tar.gz"
    exit 0
  fi
fi

rm -rf "$out"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'gpgconf --homedir "$work/gnupg" --kill all >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
repo="$out/repo"
mkdir -p "$repo/pool/main" "$work/gnupg"
chmod 700 "$work/gnupg"
export GNUPGHOME="$work/gnupg"

gpg --batch --quiet --passphrase '' --quick-gen-key \
  "Habana stand-in test repository (test only) <habana-standin@example.invalid>" ed25519 sign never
gpg --batch --armor --export > "$repo/habana-standin.asc"

build_deb() { # name version description [depends]
  local name="$1" version="$2" desc="$3" depends="${4:-}" dir="$work/pkg/$1_$2"
  mkdir -p "$dir/DEBIAN" "$dir/usr/share/doc/$name"
  {
    echo "Package: $name"
    echo "Version: $version"
    echo "Architecture: all"
    echo "Maintainer: gaudi.vllm_lmcache tests <habana-standin@example.invalid>"
    echo "Section: misc"
    echo "Priority: optional"
    [[ -n "$depends" ]] && echo "Depends: $depends"
    echo "Description: STAND-IN for $name (test package, no vendor code)"
    echo " $desc"
  } > "$dir/DEBIAN/control"
  printf 'STAND-IN package %s %s built for the habana_driver Molecule scenario.\n%s\n' \
    "$name" "$version" "$desc" > "$dir/usr/share/doc/$name/STANDIN.txt"
}

for pair in $versions; do
  version="${pair%%:*}" fw="${pair##*:}" release="${pair%%-*}"
  sha="$(printf '%s' "$version" | sha1sum | cut -c1-7)"
  for pkg in $vendor_packages; do
    depends=""
    desc="Empty placeholder with the vendor's package name and version."
    dir="$work/pkg/${pkg}_${version}"
    case "$pkg" in
      habanalabs-firmware-tools)
        desc="Ships a stand-in /usr/bin/hl-smi that prints sample output for fake Gaudi3 devices."
        depends="python3" ;;
      habanalabs-dkms)
        desc="Builds and installs no kernel module." ;;
      habanalabs-container-runtime)
        desc="Ships a stand-in /usr/bin/habana-container-runtime that refuses to run." ;;
    esac
    build_deb "$pkg" "$version" "$desc" "$depends"
    case "$pkg" in
      habanalabs-firmware-tools)
        mkdir -p "$dir/usr/bin"
        { echo '#!/usr/bin/python3'; cat "$hl_smi"; } | sed -e "s/@DRIVER_VERSION@/$release-$sha/" \
            -e "s/@HL_SMI_VERSION@/hl-$release-fw-$fw.1/" \
            -e "s/@SPI_VERSION@/Preboot version hl-gaudi3-$release-fw-$fw-sec-9 (Jun 12 2025 - 10:11:12)/" \
            > "$dir/usr/bin/hl-smi"
        chmod 0755 "$dir/usr/bin/hl-smi" ;;
      habanalabs-dkms)
        mkdir -p "$dir/usr/src/habanalabs-$release"
        echo "STAND-IN: no driver source, nothing to build." > "$dir/usr/src/habanalabs-$release/STANDIN.txt" ;;
      habanalabs-container-runtime)
        mkdir -p "$dir/usr/bin"
        printf '#!/bin/sh\necho "habana-container-runtime STAND-IN: not a container runtime" >&2\nexit 1\n' \
          > "$dir/usr/bin/habana-container-runtime"
        chmod 0755 "$dir/usr/bin/habana-container-runtime" ;;
    esac
  done
done
build_deb standin-linux-headers 1.0 "Stands in for linux-headers-\$(uname -r), which a container cannot use."
build_deb standin-dkms 1.0 "Stands in for dkms; builds nothing."

for dir in "$work"/pkg/*; do
  dpkg-deb --root-owner-group -Zgzip --build "$dir" "$repo/pool/main/$(basename "$dir")_all.deb" >/dev/null
done

dist="$repo/dists/$suite"
for arch in amd64 arm64; do
  mkdir -p "$dist/main/binary-$arch"
  (cd "$repo" && dpkg-scanpackages --multiversion pool/main /dev/null 2>/dev/null) > "$dist/main/binary-$arch/Packages"
  gzip -9nk "$dist/main/binary-$arch/Packages"
done
{
  echo "Origin: habana-standin"
  echo "Label: Habana stand-in test repository"
  echo "Suite: $suite"
  echo "Codename: $suite"
  echo "Date: $(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S UTC')"
  echo "Architectures: amd64 arm64"
  echo "Components: main"
  echo "Description: STAND-IN packages for the habana_driver Molecule scenario (no vendor code)"
  for sum in MD5Sum:md5sum SHA256:sha256sum; do
    echo "${sum%%:*}:"
    (cd "$dist" && find main -type f | sort | while read -r f; do
      printf ' %s %16d %s\n' "$(${sum##*:} "$f" | cut -d' ' -f1)" "$(stat -c %s "$f")" "$f"
    done)
  done
} > "$dist/Release"
gpg --batch --yes --clearsign -o "$dist/InRelease" "$dist/Release"
gpg --batch --yes --armor --detach-sign -o "$dist/Release.gpg" "$dist/Release"

tar -C "$repo" -czf "$out/repo.tar.gz" .
touch "$out/.complete"
echo "$out/repo.tar.gz"
