#!/bin/sh
# test-cli.sh: the lmbox admin CLI end to end on a store imported from a
# generated Maildir++ tree: import-maildir (flags, keywords, mtime, UIDs,
# UIDVALIDITY, P-field UIDLs), stat, ls, cat, uidl, check, compact, bench,
# --help everywhere, and the documented exit codes for usage errors (2),
# unopenable stores (3), missing folders/messages/UIDLs (4) and a damaged
# body (1).
set -u
LMBOX=${LMBOX:-../../storage/lmbox}
tmp=$(mktemp -d "${FAULT_TMPDIR:-.}/cli-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect CODE CMD...: run CMD, output in $tmp/out and $tmp/err, check its exit code.
expect() {
	want=$1; shift
	"$@" >"$tmp/out" 2>"$tmp/err"
	got=$?
	if [ "$got" != "$want" ]; then
		cat "$tmp/out" "$tmp/err" >&2
		fail "'$*' exited $got, expected $want"
	fi
}
# has PATTERN: $tmp/out matches the extended regex PATTERN.
has() { grep -Eq -- "$1" "$tmp/out" || { cat "$tmp/out" >&2; fail "output lacks /$1/"; }; }
# one_error_line: a failure says so in exactly one line on stderr.
one_error_line() {
	n=$(wc -l <"$tmp/err")
	[ "$n" -eq 1 ] || { cat "$tmp/err" >&2; fail "stderr has $n lines, expected 1"; }
}

# --- a Maildir++ tree
md=$tmp/Maildir
mkdir -p "$md/cur" "$md/new" "$md/tmp" "$md/.Sub.Folder/cur" "$md/.Sub.Folder/new" \
	"$md/.Sub.Folder/tmp" || fail mkdir
mkmsg() { # mkmsg FILE SUBJECT LINES MTIME
	{
		printf 'From: a@example.org\nTo: b@example.com\nSubject: %s\n\n' "$2"
		i=0
		while [ $i -lt "$3" ]; do
			printf 'line %d of %s: the quick brown fox jumps over the lazy dog\n' $i "$2"
			i=$((i + 1))
		done
	} >"$1"
	touch -d "@$4" "$1"
}
mkmsg "$md/cur/1600000001.M1P1.host,S=100:2,S" one 200 1600000000
mkmsg "$md/cur/1600000002.M2P1.host:2,FRa" two 10 1600000100
mkmsg "$md/new/1600000003.M3P1.host" three 3000 1600000200
mkmsg "$md/.Sub.Folder/cur/1600000004.M4P1.host:2,T" four 5 1600000300
printf '3 V1234567 N10 Gabcdef\n5 Puidl-one W12345 :1600000001.M1P1.host,S=100\n7 :1600000002.M2P1.host\n' \
	>"$md/dovecot-uidlist"
printf '0 Junk\n' >"$md/dovecot-keywords"

st=$tmp/store

# --- usage errors and help
expect 2 "$LMBOX"; one_error_line
expect 2 "$LMBOX" frobnicate; one_error_line
expect 2 "$LMBOX" ls; one_error_line
expect 2 "$LMBOX" cat "$st" INBOX abc; one_error_line
expect 2 "$LMBOX" cat "$st" INBOX 0; one_error_line
expect 2 "$LMBOX" check "$st" --frob; one_error_line
expect 2 "$LMBOX" bench --n x; one_error_line
expect 0 "$LMBOX" --help; has '^Usage: lmbox'; has 'Exit status'
for c in stat ls cat uidl check compact import-maildir bench; do
	expect 0 "$LMBOX" "$c" --help; has "^Usage: lmbox $c"; has 'Exit status'
	expect 0 "$LMBOX" help "$c"; has "^Usage: lmbox $c"
done
expect 3 "$LMBOX" stat "$tmp/nonexistent"; one_error_line
expect 3 "$LMBOX" ls "$tmp/nonexistent" INBOX; one_error_line

# --- import
expect 0 "$LMBOX" import-maildir "$md" "$st"
has '^INBOX: 3 messages'
has '^Sub/Folder: 1 messages'

# --- stat, ls
expect 0 "$LMBOX" stat "$st"
has '^format version +1$'
has '^folders +2$'
has '^messages +4$'
has '^ratio +0\.[0-9]+'
has '^map size'
has '^reclaim pending +0$'
expect 0 "$LMBOX" stat "$st" --value pop3.last_login; has '^pop3.last_login +\(unset\)'
expect 0 "$LMBOX" ls "$st"
has '^INBOX +3 .* 1234567 +(1[0-9]|[2-9][0-9])'
has '^Sub/Folder +1 '
expect 0 "$LMBOX" ls "$st" INBOX
has '^ +5 uidl-one .* S +2020-09-13T12:26:40Z'
has '^ +7 000000070012d687 .* FR .* Junk$'
has '^ +10 0000000a0012d687 '
expect 0 "$LMBOX" ls "$st" Sub/Folder; has ' T '
expect 4 "$LMBOX" ls "$st" Nope; one_error_line

# --- cat, uidl
expect 0 "$LMBOX" cat "$st" INBOX 5
cmp -s "$tmp/out" "$md/cur/1600000001.M1P1.host,S=100:2,S" || fail "cat INBOX 5 differs"
expect 4 "$LMBOX" cat "$st" INBOX 999; one_error_line
expect 0 "$LMBOX" uidl "$st" INBOX uidl-one
has '^uid +5$'; has '^received +2020-09-13T12:26:40Z$'; has '^flags +S$'
expect 0 "$LMBOX" uidl "$st" INBOX 000000070012d687; has '^uid +7$'; has '^keywords +Junk$'
expect 4 "$LMBOX" uidl "$st" INBOX no-such-uidl; one_error_line

# --- check, compact, bench
expect 0 "$LMBOX" check "$st"; has '^0 problems found'
expect 0 "$LMBOX" check "$st" --bodies
expect 0 "$LMBOX" check "$st" --repair
# orphan dictionary files (a training killed before its rename or its
# commit): warnings, not problems; --repair removes the old ones only
mkdir -p "$st/dict" || fail mkdir
: >"$st/dict/0000ABCD.dict" && : >"$st/dict/0000ABCD.dict.4242.tmp" &&
	: >"$st/dict/0000BEEF.dict.4243.tmp" || fail "orphan files"
touch -d '@1600000000' "$st/dict/0000ABCD.dict" "$st/dict/0000ABCD.dict.4242.tmp"
expect 0 "$LMBOX" check "$st"; has '^0 problems found'
has '^warning: .*/dict/0000ABCD\.dict: a dictionary file no record names'
has '^warning: .*/dict/0000ABCD\.dict\.4242\.tmp: an unfinished dictionary file'
has '^warning: .*/dict/0000BEEF\.dict\.4243\.tmp: an unfinished'
expect 0 "$LMBOX" check "$st" --repair; has '^0 problems found'
has '0000ABCD\.dict: .*\(removed\)'; has '0000BEEF\.dict\.4243\.tmp: .*left: less than'
[ ! -e "$st/dict/0000ABCD.dict" ] && [ ! -e "$st/dict/0000ABCD.dict.4242.tmp" ] ||
	fail "repair left the old orphan files"
[ -e "$st/dict/0000BEEF.dict.4243.tmp" ] || fail "repair removed a recent file"
rm -f "$st/dict/0000BEEF.dict.4243.tmp"
expect 0 "$LMBOX" check "$st"
grep -q warning "$tmp/out" && { cat "$tmp/out" >&2; fail "warnings after the repair"; }
expect 0 "$LMBOX" compact "$st"; has '^freed'
expect 0 "$LMBOX" bench --n 300 --dir "$tmp"
has '^append .*msgs/s'; has '^metadata scan'; has '^uidl lookup'; has '^body read'
has '^delete .* 300 messages'; has '^ratio corpus'; has '^ratio plain text'
ls "$tmp" | grep -q lmbox-bench && fail "bench left its store behind"

# --- a damaged body: cat fails with 1, check --bodies finds it
expect 0 "$LMBOX" uidl "$st" INBOX uidl-one
seg=$(awk '$1 == "segment" { print $2 }' "$tmp/out")
off=$(awk '$1 == "offset" { print $2 }' "$tmp/out")
len=$(awk '$1 == "stored" { print $2 }' "$tmp/out")
f=$(printf '%s/seg/%08X' "$st" "$seg")
[ -f "$f" ] || fail "no segment file $f"
pos=$((off + len / 2))
b=$(od -An -tu1 -j "$pos" -N1 "$f" | tr -d ' ')
printf "\\$(printf %o $((b ^ 4)))" | dd of="$f" bs=1 seek="$pos" conv=notrunc 2>/dev/null
expect 1 "$LMBOX" cat "$st" INBOX 5
expect 1 "$LMBOX" check "$st" --bodies; has '[1-9][0-9]* problems? found'
expect 0 "$LMBOX" cat "$st" INBOX 7
echo "test-cli: ok"
exit 0
