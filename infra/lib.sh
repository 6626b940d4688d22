# shellcheck shell=bash
# Shared by the infra scripts (sourced, not run): the repository root, the state dir and template
# rendering. Sourcing it makes the script run from the repository root.
#
#   REPO   the repository root
#   STATE  the git-ignored state dir of the local stack and the check tools: $SLUICE_STACK_STATE_DIR,
#          else $SLUICE_STATE_DIR (its older name, still read by the load driver and the check scripts),
#          else $REPO/.state. Not created here.
# shellcheck disable=SC2034 # REPO and STATE are for the scripts that source this file
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${SLUICE_STACK_STATE_DIR:-${SLUICE_STATE_DIR:-$REPO/.state}}"
cd "$REPO" || exit 1

# render_template SRC DEST NAME...: writes SRC to DEST with every @NAME@ replaced by the value of the
# shell variable NAME (envsubst-style, for the server config files under infra/). Fails, leaving DEST
# alone, if an @UPPER_CASE@ placeholder is left.
render_template() {
  local src="$1" dest="$2" name value left
  shift 2
  local -a subst=()
  for name in "$@"; do
    value="${!name}"
    value="${value//\\/\\\\}" value="${value//|/\\|}" value="${value//&/\\&}"
    subst+=(-e "s|@${name}@|${value}|g")
  done
  sed "${subst[@]}" "$src" >"$dest.tmp" || return 1
  if left="$(grep -o '@[A-Z][A-Z0-9_]*@' "$dest.tmp")"; then
    rm -f "$dest.tmp"
    printf '%s: no value for %s\n' "$src" "$(sort -u <<<"$left" | tr '\n' ' ')" >&2
    return 1
  fi
  mv "$dest.tmp" "$dest"
}
