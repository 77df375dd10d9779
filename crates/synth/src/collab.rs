//! The collaboration spec (`collab.toml`) that describes a generated world: its parties,
//! their tables, identifier columns and forms, and column roles. Its format is
//! documented in `docs/collaboration-spec.md`.

/// The spec text for a world of `people` people generated from `seed`, with the news
/// party when the world has two media parties.
pub(crate) fn spec(seed: u64, people: u64, media: u8) -> String {
    let mut text = base(seed, people);
    if media >= 2 {
        text = text.replace(
            "a social platform, a retailer and the brand Aurora",
            "a social platform, a news app, a retailer and the brand Aurora",
        );
        text.push_str(NEWS);
    }
    text
}

/// The second media party: like social, with its own users and exposures for some of
/// the same campaigns.
const NEWS: &str = r#"
[[party]]
name = "news"
description = "Second media platform: a news app's ad system (the Toutiao role of the JD-X partnerships)"

# As social's: differential privacy, ε 0.5 per query, 10 per analyst, each person
# counted in one group with at most 10 rows.
[party.privacy]
mode = "dp"
min_people = 50
epsilon = 0.5
budget = 10.0
max_groups_per_person = 1
max_rows_per_person = 10

[[party.table]]
name = "users"
path = "news/users.parquet"
record_id = "user_id"
dimensions = ["age_band", "gender", "city_tier"]

[[party.table.identifier]]
column = "phone_sha256"
type = "phone"
form = "sha256"

[[party.table.identifier]]
column = "device_id"
type = "device"
device_type_column = "device_type"

[[party.table]]
name = "exposures"
path = "news/exposures.parquet"
record_id = "user_id"
dimensions = ["campaign_id", "placement", "kind"]
timestamps = ["ts"]
"#;

fn base(seed: u64, people: u64) -> String {
    format!(
        r#"# Collaboration spec for the synthetic world written by `jingteng synth`.
# Every field is documented in docs/collaboration-spec.md. Paths are relative to this file.

[collaboration]
id = "synth-{seed}"
description = "Synthetic world (seed {seed}, {people} people): a social platform, a retailer and the brand Aurora"
host = "retail"

[[party]]
name = "social"
description = "Media platform: the social network's ad system"

# How this party's data may leave the room (docs/privacy.md): differential privacy,
# ε 0.5 per query, 10 per analyst, each person counted in one group with at most 10
# rows. Set mode = "threshold" for exact answers with groups under min_people suppressed.
[party.privacy]
mode = "dp"
min_people = 50
epsilon = 0.5
budget = 10.0
max_groups_per_person = 1
max_rows_per_person = 10

[[party.table]]
name = "users"
path = "social/users.parquet"
record_id = "user_id"
dimensions = ["age_band", "gender", "city_tier", "interest"]

[[party.table.identifier]]
column = "phone_md5"
type = "phone"
form = "md5"

[[party.table.identifier]]
column = "device_id"
type = "device"
device_type_column = "device_type"

[[party.table]]
name = "campaigns"
path = "social/campaigns.parquet"
dimensions = ["campaign_id", "brand", "category", "objective", "start_date", "end_date"]
measures = ["spend_fen", "holdout_pct"]

[[party.table]]
name = "exposures"
path = "social/exposures.parquet"
record_id = "user_id"
dimensions = ["campaign_id", "placement", "kind"]
timestamps = ["ts"]

[[party.table]]
name = "holdout"
path = "social/holdout.parquet"
record_id = "user_id"
dimensions = ["campaign_id", "grp"]

[[party]]
name = "retail"
description = "Retailer: members, online and offline orders"

[party.privacy]
mode = "dp"
min_people = 50
epsilon = 0.5
budget = 10.0

[[party.table]]
name = "users"
path = "retail/users.parquet"
record_id = "member_id"
dimensions = ["level", "region", "age_band", "gender"]

[[party.table.identifier]]
column = "phone"
type = "phone"

[[party.table.identifier]]
column = "email"
type = "email"

[[party.table.identifier]]
column = "device_id"
type = "device"
device_type_column = "device_type"

[[party.table]]
name = "orders"
path = "retail/orders.parquet"
record_id = "member_id"
dimensions = ["sku", "category", "brand", "channel", "store_id"]
measures = ["quantity", "amount_fen"]
bounds = {{ quantity = [0, 3], amount_fen = [0, 200000] }}
timestamps = ["ts"]

[[party]]
name = "brand"
description = "The brand Aurora: its own customer list"

[party.privacy]
mode = "dp"
min_people = 50

[[party.table]]
name = "crm"
path = "brand/crm.parquet"
record_id = "customer_id"
dimensions = ["tier", "opted_out", "consent"]

[[party.table.identifier]]
column = "phone_sha256"
type = "phone"
form = "sha256"

[[party.table.identifier]]
column = "email"
type = "email"
"#
    )
}
