#!/usr/bin/env bash
# Create or update a control-node virtualenv.
#   venv.sh          .venv from requirements-dev.txt (the newest tested ansible-core)
#   venv.sh oldest   .venv-oldest (GVL_VENV_OLDEST) from requirements-oldest.txt plus
#                    ansible-core==$ANSIBLE_CORE_OLDEST (set by the Makefile): make sanity
#                    and make unit run on both.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

req="$ROOT/requirements-dev.txt"
core_req=()
if [[ "${1:-}" == oldest ]]; then
  VENV="$VENV_OLDEST"
  req="$ROOT/requirements-oldest.txt"
  core_req=("ansible-core==${ANSIBLE_CORE_OLDEST:?set by the Makefile (make venv-oldest)}")
fi
stamp="$VENV/.requirements.sha256"
want="$({ cat "$req"; printf '%s\n' "${core_req[@]}"; } | sha256sum | cut -d' ' -f1)"

if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "virtualenv $VENV is up to date"
  exit 0
fi

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "python3 venv support missing; installing python3-venv"
  apt_get_install python3-venv
fi
[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch comes from PyTorch's CPU wheel index (PyPI's torch wheels are CUDA builds of
# several GB); GVL_TORCH_INDEX_URL points it at a mirror, or at nothing with an empty value.
torch_index="${GVL_TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}"
index_args=()
[[ -n "$torch_index" ]] && index_args=(--extra-index-url "$torch_index")
# Only torch is looked up there: every other requirement comes from the ordinary index.
torch_req="$(grep -E '^torch==' "$req" || true)"
if [[ -n "$torch_req" ]]; then
  "$VENV/bin/python" -m pip install -q --retries 1 --no-deps "${index_args[@]}" "$torch_req"
fi
"$VENV/bin/python" -m pip install -q -r "$req" "${core_req[@]}"
echo "$want" > "$stamp"
"$VENV/bin/python" -c "import ansible.release as r; print(\"ansible-core\", r.__version__)"
