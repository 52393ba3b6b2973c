#!/bin/sh
# Build one libFuzzer target with clang (ASan+UBSan) from the storage
# sources, replay its regression inputs (tests/fuzz/regress/TARGET/), then
# fuzz it for FUZZ_SECONDS (default 20) from its seed corpus.  Exit 0 when
# nothing crashed; a crash input is left in the build dir for a regression.
set -eu
target=$1
srcdir=${LMBOX_TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
out=${LMBOX_FUZZ_OUT:-$PWD/fuzz-out}
seconds=${FUZZ_SECONDS:-20}
CLANG=${CLANG:-clang}
mkdir -p "$out/$target-corpus"
srcs=$(ls "$srcdir"/storage/lmbox-*.c | grep -v -- '-cli')
"$CLANG" -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -I"$srcdir/storage" \
	-o "$out/$target" "$srcdir/tests/fuzz/$target.c" $srcs -llmdb -lz
regress="$srcdir/tests/fuzz/regress/$target"
if [ -d "$regress" ] && [ -n "$(ls "$regress")" ]; then
	echo "replaying $(ls "$regress" | wc -l) regression inputs"
	"$out/$target" "$regress"/*
fi
seeds="$srcdir/tests/fuzz/corpus/$target"
echo "fuzzing $target for ${seconds}s"
"$out/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
	-artifact_prefix="$out/$target-" -print_final_stats=1 \
	"$out/$target-corpus" "$seeds" 2>&1 | tail -15
