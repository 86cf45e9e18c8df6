"""The networks, one file each, whose blocks mirror their papers' figures; `registry` names them
and `weights` loads and saves them."""
