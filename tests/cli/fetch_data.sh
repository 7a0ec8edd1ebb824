#!/usr/bin/env bash
# scripts/fetch_data.sh without the network: --mnist-dir (the test subset, so its checksums
# fail, naming the file; the dotted names some mirrors use are found; truncated .gz files are
# named as such), an uncompressed file beside the .gz that does not verify, --cifar-dir (sparse
# files of the right size are linked; the Python version and the packed tarball are named as
# such), a destination that cannot be created, and the --data-dir hint for a non-default place.
set -u
: "${KILN_SRC:?}" "${KILN_TEST_DATA:?}"
fetch="$KILN_SRC/scripts/fetch_data.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() {  # check NAME EXPECTED_EXIT PATTERN -- command...
  local name=$1 want=$2 pat=$3
  shift 4
  "$@" >"$tmp/out" 2>&1
  local got=$?
  if [ "$got" != "$want" ] || ! grep -Eq -- "$pat" "$tmp/out"; then
    echo "FAIL $name: exit $got (want $want), output lacks /$pat/ or has it:"; cat "$tmp/out"; fail=1; return
  fi
  echo "ok   $name"
}
sub="$KILN_TEST_DATA/mnist"
check mnist-md5 1 "^fetch_data.sh: $sub/t(rain|10k)-(images|labels)-idx[13]-ubyte.gz: md5 [0-9a-f]{32}, expected [0-9a-f]{32} \(corrupt or wrong file\)$" -- \
  "$fetch" --only mnist --mnist-dir "$sub" --data-dir "$tmp/d1"
mkdir -p "$tmp/dots"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  cp "$sub/$f.gz" "$tmp/dots/${f/-idx/.idx}.gz"
done
check mnist-dotted-names 1 "^fetch_data.sh: $tmp/dots/t(rain|10k)-(images|labels)\.idx[13]-ubyte.gz: md5 " -- \
  "$fetch" --only mnist --mnist-dir "$tmp/dots" --data-dir "$tmp/d2"
check mnist-missing 1 "^fetch_data.sh: $tmp/d1: no t(rain|10k)-(images|labels)-idx[13]-ubyte or .*\.gz$" -- \
  "$fetch" --only mnist --mnist-dir "$tmp/d1" --data-dir "$tmp/d3"
mkdir -p "$tmp/trunc"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  head -c 200 "$sub/$f.gz" >"$tmp/trunc/$f.gz"
done
check mnist-truncated-gz 1 "^fetch_data.sh: $tmp/trunc/t(rain|10k)-(images|labels)-idx[13]-ubyte.gz: not a valid gzip file \(corrupt or truncated\)$" -- \
  "$fetch" --only mnist --mnist-dir "$tmp/trunc" --data-dir "$tmp/d7"
# An uncompressed file beside the .gz is what the loaders read first: it must verify too.
mkdir -p "$tmp/d8/mnist" "$tmp/d8/fashion-mnist"
printf 'stale' >"$tmp/d8/mnist/train-labels-idx1-ubyte"
check mnist-stale-raw 1 "^fetch_data.sh: $tmp/d8/mnist/train-labels-idx1-ubyte: md5 [0-9a-f]{32}, expected a25bea736e30d166cdddb491f175f624; the loaders read it before train-labels-idx1-ubyte.gz: remove it$" -- \
  "$fetch" --only mnist --mnist-dir "$sub" --data-dir "$tmp/d8"
gzip -c "$sub/t10k-labels-idx1-ubyte.gz" >"$tmp/d8/fashion-mnist/t10k-labels-idx1-ubyte"
check fashion-stale-raw 1 "^fetch_data.sh: $tmp/d8/fashion-mnist/t10k-labels-idx1-ubyte: md5 [0-9a-f]{32}, expected 15d484375f8d13e6eb1aabb0c3f46965; the loaders read it before t10k-labels-idx1-ubyte.gz: remove it$" -- \
  "$fetch" --only fashion-mnist --data-dir "$tmp/d8"
check cannot-create 1 '^fetch_data.sh: /dev/null/x: cannot create the directory$' -- \
  "$fetch" --only mnist --mnist-dir "$sub" --data-dir /dev/null/x
mkdir -p "$tmp/c/cifar-10-batches-bin"
for f in data_batch_1 data_batch_2 data_batch_3 data_batch_4 data_batch_5 test_batch; do
  truncate -s 30730000 "$tmp/c/cifar-10-batches-bin/$f.bin"
done
check cifar-link 0 "^cifar10: linked from $tmp/c/cifar-10-batches-bin into $tmp/d4/cifar10$" -- \
  "$fetch" --only cifar10 --cifar-dir "$tmp/c" --data-dir "$tmp/d4"
grep -q "^the apps read --data-dir data by default: pass --data-dir $tmp/d4$" "$tmp/out" ||
  { echo "FAIL: no --data-dir hint"; cat "$tmp/out"; fail=1; }
check cifar-again 0 "^cifar10: present in $tmp/d4/cifar10$" -- "$fetch" --only cifar10 --data-dir "$tmp/d4"
mkdir -p "$tmp/py/cifar-10-batches-py" && : >"$tmp/py/cifar-10-batches-py/data_batch_1"
check cifar-pickle 1 "^fetch_data.sh: $tmp/py: this is the Python \(pickle\) version of CIFAR-10" -- \
  "$fetch" --only cifar10 --cifar-dir "$tmp/py" --data-dir "$tmp/d5"
mkdir -p "$tmp/tar" && : >"$tmp/tar/cifar-10-binary.tar.gz"
check cifar-tarball 1 "^fetch_data.sh: $tmp/tar: unpack cifar-10-binary.tar.gz first" -- \
  "$fetch" --only cifar10 --cifar-dir "$tmp/tar" --data-dir "$tmp/d6"
exit $fail
