# The synthetic world's decision in Rego, as an OPA user would write it: one generic policy over data
# (data.tokens, data.members) and an input naming the token, the key and the resource. Evaluated by
# regorus in benches/rego.rs, beside permgate on the same world and request mix.
package permgate

import rego.v1

default allow := false

token := data.tokens[input.token]

# A policy grants the key: every key (the bare "*" group), or the key is among its groups' keys.
grants(policy) if policy.all_keys

grants(policy) if policy.keys[input.key]

# Token-policy resource selectors: an account and all its zones, every zone of an account, one zone.
selects(selector) if {
	selector.kind == "account"
	selector.account == input.account
}

selects(selector) if {
	selector.kind == "zones"
	input.type == "zone"
	selector.account == input.account
}

selects(selector) if {
	selector.kind == "zone"
	input.type == "zone"
	selector.zone == input.resource
}

token_allows if {
	some policy in token.policies
	policy.effect == "allow"
	grants(policy)
	selects(policy.resource)
}

token_denies if {
	some policy in token.policies
	policy.effect == "deny"
	grants(policy)
	selects(policy.resource)
}

# A member policy covers its account itself, every zone when an object is "*", or the zones it lists.
member_policies := data.members[token.user][input.account]

covers(_) if input.type == "account"

covers(policy) if {
	input.type == "zone"
	policy.all_zones
}

covers(policy) if {
	input.type == "zone"
	policy.zones[input.resource]
}

member_allows if {
	some policy in member_policies
	policy.effect == "allow"
	grants(policy)
	covers(policy)
}

member_denies if {
	some policy in member_policies
	policy.effect == "deny"
	grants(policy)
	covers(policy)
}

# An account token: its own policies. A user token: its own policies and its user's membership.
allow if {
	token_allows
	not token_denies
	not token.user
}

allow if {
	token_allows
	not token_denies
	token.user
	member_allows
	not member_denies
}
