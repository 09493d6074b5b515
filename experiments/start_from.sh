# Sourced by the masking scripts. start_from SRC DST starts a new run folder DST as a copy of run
# SRC's predictor, config and log (not its results), whole or not at all; `--resume` then trains
# it on, which with the constant learning rate is the longer run from the start. Does nothing
# where DST already has a predictor; prints why and fails where SRC has none or the copy fails.
start_from() {
  local src=$1 dst=$2
  [ -f "$dst/predictor.pt" ] && return 0
  [ -f "$src/predictor.pt" ] || { echo "no $src/predictor.pt to start from"; return 1; }
  rm -rf "$dst.copy" && mkdir -p "$dst.copy" && cp "$src/"{config.json,log.jsonl,predictor.pt} "$dst.copy/" &&
    rm -rf "$dst" && mv "$dst.copy" "$dst" || { echo "copying $src to $dst failed"; return 1; }
}
