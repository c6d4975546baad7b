#!/usr/bin/env bash
# data/build_corpus.sh — builds the default training corpus from Debian packages.
#
#   data/build_corpus.sh              build data/corpus/<part>.txt + data/corpus/MANIFEST
#   data/build_corpus.sh --fixtures   (re)write data/fixtures/<part>.txt from the built corpus
#
# Every package is fetched with `apt-get download` and unpacked with `dpkg-deb -x` into
# data/cache/ (git-ignored scratch); nothing is installed on the system. Each part is skipped when
# its output already exists and is valid (size window, UTF-8, separator layout), so re-running is
# cheap. Package versions are recorded in MANIFEST: several of these packages get security
# updates, so tests check sizes and UTF-8 validity, never hashes.
#
# Part file format (read by build/bpe_train and build/make_shards):
#   a sequence of documents; each document ends with '\n' and is followed by a separator line
#   that holds the single byte 0x1E (ASCII RS). Documents never contain 0x1E, CR or NUL.
#   Documents longer than 64 KiB are cut at the first blank line after 64 KiB, so that one huge
#   file (e.g. a 1.4 MB TeX chapter) cannot dominate the deterministic validation split.
set -euo pipefail
export LC_ALL=C.UTF-8

DATA="$(cd "$(dirname "$0")" && pwd)"
CACHE="$DATA/cache"
OUT="$DATA/corpus"
CAP=$((10 * 1024 * 1024))        # per-part cap in bytes (documented in data/README.md)
MIN_PART=$((1000 * 1000))        # a valid part holds at least this many bytes
MAX_DOC=65536                    # documents are cut at a blank line past this many bytes
RS=$'\x1e'

log() { printf '[corpus %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'build_corpus.sh: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Packages: download (once) and unpack (once).

fetch() {  # fetch PKG -> path of the .deb in cache/debs
  local pkg=$1 deb
  mkdir -p "$CACHE/debs"
  deb=$(ls "$CACHE/debs/${pkg}_"*.deb 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then
    log "apt-get download $pkg"
    (cd "$CACHE/debs" && apt-get download "$pkg" >/dev/null 2>"$CACHE/apt-$pkg.err") ||
      die "apt-get download $pkg failed ($(tail -1 "$CACHE/apt-$pkg.err")); run 'apt-get update' first, or check that Debian's package lists carry $pkg"
    deb=$(ls "$CACHE/debs/${pkg}_"*.deb | head -1)
  fi
  echo "$deb"
}

unpack() {  # unpack PKG -> directory with the package's tree
  local pkg=$1 dir="$CACHE/x/$1" deb
  deb=$(fetch "$pkg")
  if [ ! -f "$dir/.unpacked" ]; then
    log "dpkg-deb -x $(basename "$deb")"
    rm -rf "$dir" && mkdir -p "$dir"
    dpkg-deb -x "$deb" "$dir"
    touch "$dir/.unpacked"
  fi
  echo "$dir"
}

version() { dpkg-deb -f "$(fetch "$1")" Version; }

# ---------------------------------------------------------------------------------------------
# Document streams. Every generator writes documents to stdout, each followed by an RS line.

# Reads file paths on stdin (already in output order); writes each valid UTF-8 file as one document.
cat_docs() {
  local f skipped=0
  while IFS= read -r f; do
    if ! iconv -f UTF-8 -t UTF-8 "$f" >/dev/null 2>&1; then skipped=$((skipped + 1)); continue; fi
    tr -d '\000\r\036' <"$f"
    [ -z "$(tail -c1 "$f")" ] || echo
    printf '%s\n' "$RS"
  done
  [ "$skipped" = 0 ] || log "  skipped $skipped file(s) that are not valid UTF-8"
}

# Reads file paths on stdin; keeps a deterministic pseudo-random subset whose sizes add up to at
# most CAP bytes (order by the CRC of the path, take while under the cap), printed in path order.
# A hash order, not path order, so a capped part samples all of its subdirectories.
cap_files() {
  local f total=0 size
  while IFS= read -r f; do printf '%s %s\n' "$(printf '%s' "${f#"$CACHE"/}" | cksum | cut -d' ' -f1)" "$f"; done |
    sort -n -k1,1 | cut -d' ' -f2- |
    while IFS= read -r f; do
      size=$(stat -c %s "$f")
      if [ $((total + size)) -gt "$CAP" ]; then continue; fi
      total=$((total + size))
      printf '%s\n' "$f"
    done | sort
}

# Splits documents longer than MAX_DOC bytes at the next blank line and drops empty documents.
normalize_docs() {
  LC_ALL=C awk -v max="$MAX_DOC" -v rs="$RS" '
    function flush() { if (doc != "" && doc !~ /^[ \t\n]*$/) printf "%s%s\n", doc, rs; doc = ""; n = 0 }
    $0 == rs { flush(); next }
    { doc = doc $0 "\n"; n += length($0) + 1; if (n > max && $0 == "") flush() }
    END { flush() }'
}

gen_bible() {  # one document per chapter: "Genesis 1", blank line, "1 In the beginning ..."
  local bin txt
  bin=$(unpack bible-kjv)/usr/bin/bible
  txt=$(unpack bible-kjv-text)/usr/lib
  # -l 100000: no line wrapping (one verse per line); -p: data files from the unpacked tree.
  "$bin" -l 100000 -p "$txt" 'Gen1:1-Rev22:21' </dev/null | awk -v rs="$RS" '
    /^$/ { next }
    /^[^ ]/ { if (started) print rs; print $0; print ""; started = 1; next }
    { sub(/^ +/, ""); print }
    END { if (started) print rs }'
}

gen_fortunes() {  # one document per fortune (the '%' lines separate fortunes)
  local d f
  for d in "$(unpack fortunes-min)" "$(unpack fortunes)"; do
    for f in $(find "$d/usr/share/games/fortunes" -type f ! -name '*.dat' | sort); do
      iconv -f UTF-8 -t UTF-8 "$f" >/dev/null 2>&1 || { log "  skipped $f (not UTF-8)"; continue; }
      tr -d '\000\r\036' <"$f" | awk -v rs="$RS" '$0 == "%" { print rs; next } { print } END { print rs }'
    done
  done
}

gen_python_doc() {  # reStructuredText sources of the Python 3.11 documentation, one file per doc
  find "$(unpack python3.11-doc)/usr/share/doc/python3.11/html/_sources" -type f -name '*.txt' | cap_files | cat_docs
}

gen_perl_doc() {  # perl's POD manual pages
  find "$(unpack perl-doc)/usr/share/perl" -type f -name '*.pod' | cap_files | cat_docs
}

gen_pari_doc() {  # PARI/GP manuals in TeX: math notation
  find "$(unpack pari-doc)/usr/share/pari/doc" -type f -name '*.tex' | cap_files | cat_docs
}

gen_eigen() {  # Eigen's C++ template headers (Eigen/ and unsupported/)
  find "$(unpack libeigen3-dev)/usr/include/eigen3" -type f | cap_files | cat_docs
}

gen_linux() {  # C sources under kernel/ and mm/ of the Linux 6.1 tree
  local d src="$CACHE/linux-src"
  d=$(unpack linux-source-6.1)
  if [ ! -f "$src/.unpacked" ]; then
    log "untar kernel/ and mm/ from linux-source-6.1.tar.xz"
    rm -rf "$src" && mkdir -p "$src"
    tar -xJf "$d/usr/src/linux-source-6.1.tar.xz" -C "$src" --wildcards \
      'linux-source-6.1/kernel/*.c' 'linux-source-6.1/mm/*.c'
    touch "$src/.unpacked"
  fi
  find "$src/linux-source-6.1/kernel" "$src/linux-source-6.1/mm" -type f -name '*.c' | cap_files | cat_docs
}

# Renders one man page (path on each stdin line) into DST/<section>_<name>.txt; '.so' link pages
# are skipped.
render_pages() {
  local dst=$1 f out head3
  while IFS= read -r f; do
    head3=$(zcat "$f" 2>/dev/null | head -3) || true
    if printf '%s\n' "$head3" | grep -q '^\.so '; then continue; fi
    out="$dst/$(basename "$(dirname "$f")")_$(basename "$f" .gz).txt"
    # '.ad l' first, -rHY=0: no justification and no hyphenation (they add runs of spaces and
    # broken words); -k/-Kutf-8: input through preconv as UTF-8; -P-cbou: plain text, no escapes.
    { printf '.ad l\n'; zcat "$f"; } | timeout 20 groff -k -Kutf-8 -Tutf8 -mandoc -rHY=0 -P-cbou 2>/dev/null |
      cat -s >"$out.tmp" && mv "$out.tmp" "$out" || rm -f "$out.tmp"
  done
}

# Renders every man page of PKG under usr/share/man/LANG with groff (never man(1)) into
# cache/render/LANG/, once, in two parallel streams.
RENDER_VERSION="groff ad-l hy0 v2"
render_man() {
  local pkg=$1 lang=$2 d dst="$CACHE/render/$2"
  d=$(unpack "$pkg")
  if [ "$(cat "$dst/.rendered" 2>/dev/null)" != "$RENDER_VERSION" ]; then
    log "rendering $pkg ($lang) man pages with groff"
    rm -rf "$dst" && mkdir -p "$dst"
    find "$d/usr/share/man/$lang" -type f -name '*.gz' | sort >"$dst/.pages"
    awk 'NR % 2 == 0' "$dst/.pages" | render_pages "$dst" &
    awk 'NR % 2 == 1' "$dst/.pages" | render_pages "$dst"
    wait
    echo "$RENDER_VERSION" >"$dst/.rendered"
  fi
  echo "$dst"
}

gen_manpages_zh() { find "$(render_man manpages-zh zh_CN)" -type f -name '*.txt' -size +0 | cap_files | cat_docs; }
gen_manpages_fr() { find "$(render_man manpages-fr fr)" -type f -name '*.txt' -size +0 | cap_files | cat_docs; }

# ---------------------------------------------------------------------------------------------
# Parts: name, packages, licence. Order here is the order of data/corpus/MANIFEST.

PARTS=(bible fortunes python_doc perl_doc pari_doc eigen linux manpages_zh manpages_fr)
declare -A PKGS=(
  [bible]="bible-kjv bible-kjv-text" [fortunes]="fortunes-min fortunes" [python_doc]="python3.11-doc"
  [perl_doc]="perl-doc" [pari_doc]="pari-doc" [eigen]="libeigen3-dev" [linux]="linux-source-6.1"
  [manpages_zh]="manpages-zh" [manpages_fr]="manpages-fr")
declare -A LICENCE=(
  [bible]="public domain (KJV text); Debian packaging GPL-2+"
  [fortunes]="BSD (fortune-mod); quotations collected from many sources, see the package copyright"
  [python_doc]="PSF-2.0 (Python documentation)"
  [perl_doc]="GPL-1+ or Artistic-1"
  [pari_doc]="GPL-2+"
  [eigen]="MPL-2.0 (some files LGPL-2.1+ or BSD-3-clause)"
  [linux]="GPL-2.0 (some files GPL-2.0+ or dual-licensed)"
  [manpages_zh]="GFDL-1.2+"
  [manpages_fr]="GPL-3+")

# valid PATH: size window, UTF-8, ends with a separator line, no CR/NUL.
valid_part() {
  local f=$1 size
  [ -f "$f" ] || return 1
  size=$(stat -c %s "$f")
  [ "$size" -ge "$MIN_PART" ] && [ "$size" -le $((CAP + 1024 * 1024)) ] || return 1
  [ "$(tail -c 2 "$f" | od -An -tx1 | tr -d ' \n')" = "1e0a" ] || return 1
  iconv -f UTF-8 -t UTF-8 "$f" >/dev/null 2>&1 || return 1
  ! LC_ALL=C grep -q -P '[\r\x00]' "$f"
}

count_docs() { LC_ALL=C grep -c -x "$RS" "$1"; }

build_part() {
  local part=$1 f="$OUT/$1.txt" t0
  if valid_part "$f"; then log "$part: present and valid ($(stat -c %s "$f") bytes), skipped"; return; fi
  t0=$(date +%s)
  log "$part: building"
  "gen_$part" | normalize_docs >"$f.tmp"
  valid_part "$f.tmp" || die "$part: the built file $f.tmp is not valid (size $(stat -c %s "$f.tmp") bytes, expected $MIN_PART..$((CAP + 1024 * 1024)), UTF-8, ending with an RS line); inspect it and data/cache/"
  mv "$f.tmp" "$f"
  log "$part: $(stat -c %s "$f") bytes, $(count_docs "$f") documents, $(($(date +%s) - t0)) s"
}

write_manifest() {
  local part p vers
  {
    printf 'part\tpackages\tversions\tbytes\tdocuments\tlicence\n'
    for part in "${PARTS[@]}"; do
      vers=""
      for p in ${PKGS[$part]}; do vers="$vers${vers:+ }$(version "$p")"; done
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$part" "${PKGS[$part]// /,}" "${vers// /,}" \
        "$(stat -c %s "$OUT/$part.txt")" "$(count_docs "$OUT/$part.txt")" "${LICENCE[$part]}"
    done
  } >"$OUT/MANIFEST.tmp"
  mv "$OUT/MANIFEST.tmp" "$OUT/MANIFEST"
}

# The test fixtures: from each part, whole documents of at most 16 KiB from the start of the part,
# until the slice holds ~64 KiB (9 parts: ~0.6 MB committed), so that tests and CI have real mixed
# text without the network. Licences: data/fixtures/README.md.
write_fixtures() {
  local part dst="$DATA/fixtures"
  mkdir -p "$dst"
  for part in "${PARTS[@]}"; do
    [ -f "$OUT/$part.txt" ] || die "$OUT/$part.txt missing: run data/build_corpus.sh first"
    LC_ALL=C awk -v rs="$RS" -v max=65536 '
      { doc = doc $0 "\n" }
      $0 == rs { if (length(doc) <= 16384 && total + length(doc) <= max) { printf "%s", doc; total += length(doc) }
                 doc = ""; if (total > max - 512) exit }' "$OUT/$part.txt" >"$dst/$part.txt"
    log "fixture $part: $(stat -c %s "$dst/$part.txt") bytes, $(count_docs "$dst/$part.txt") documents"
  done
}

main() {
  command -v dpkg-deb >/dev/null || die "dpkg-deb not found (this script needs a Debian-based system)"
  command -v groff >/dev/null || die "groff not found; install it with: apt-get install -y groff"
  mkdir -p "$CACHE" "$OUT"
  if [ "${1:-}" = "--fixtures" ]; then write_fixtures; return; fi
  local t0 part
  t0=$(date +%s)
  for part in "${PARTS[@]}"; do build_part "$part"; done
  write_manifest
  log "corpus done in $(($(date +%s) - t0)) s: $(du -cb "$OUT"/*.txt | tail -1 | cut -f1) bytes in ${#PARTS[@]} parts"
  column -t -s $'\t' "$OUT/MANIFEST" >&2 || cat "$OUT/MANIFEST" >&2
}

main "$@"
