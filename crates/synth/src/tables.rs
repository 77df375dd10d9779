//! The tables the world writes: their Arrow schemas, per-chunk builders, and the writer
//! that puts every table on disk as both CSV and Parquet.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampSecondBuilder, UInt32Array,
};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result};

/// Time zone of every timestamp: China Standard Time (no daylight saving).
pub(crate) const TZ: &str = "+08:00";

/// Every table the world writes, as `party/table`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    SocialUsers,
    SocialCampaigns,
    SocialExposures,
    SocialHoldout,
    RetailUsers,
    RetailOrders,
    BrandCrm,
    TruthPeople,
    TruthCausedOrders,
    NewsUsers,
    NewsExposures,
    TruthNewsUsers,
}

impl Table {
    pub(crate) const ALL: [Table; 9] = [
        Table::SocialUsers,
        Table::SocialCampaigns,
        Table::SocialExposures,
        Table::SocialHoldout,
        Table::RetailUsers,
        Table::RetailOrders,
        Table::BrandCrm,
        Table::TruthPeople,
        Table::TruthCausedOrders,
    ];
    /// The tables a second media party (`--media 2`) adds, written after [`Table::ALL`].
    pub(crate) const NEWS: [Table; 3] = [
        Table::NewsUsers,
        Table::NewsExposures,
        Table::TruthNewsUsers,
    ];

    /// The tables of a world with `media` media parties, in the order they are listed.
    pub(crate) fn for_media(media: u8) -> Vec<Table> {
        let mut out = Table::ALL.to_vec();
        if media >= 2 {
            out.extend(Table::NEWS);
        }
        out
    }

    /// `party/table`, which is also the path of its files without the extension.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::SocialUsers => "social/users",
            Table::SocialCampaigns => "social/campaigns",
            Table::SocialExposures => "social/exposures",
            Table::SocialHoldout => "social/holdout",
            Table::RetailUsers => "retail/users",
            Table::RetailOrders => "retail/orders",
            Table::BrandCrm => "brand/crm",
            Table::TruthPeople => "truth/people",
            Table::TruthCausedOrders => "truth/caused_orders",
            Table::NewsUsers => "news/users",
            Table::NewsExposures => "news/exposures",
            Table::TruthNewsUsers => "truth/news_users",
        }
    }

    pub(crate) fn schema(self) -> SchemaRef {
        let s = |name: &str| Field::new(name, DataType::Utf8, false);
        let os = |name: &str| Field::new(name, DataType::Utf8, true);
        let i32f = |name: &str| Field::new(name, DataType::Int32, false);
        let i64f = |name: &str| Field::new(name, DataType::Int64, false);
        let date = |name: &str| Field::new(name, DataType::Date32, false);
        let ts = || {
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Second, Some(TZ.into())),
                false,
            )
        };
        let fields = match self {
            Table::SocialUsers => vec![
                s("user_id"),
                os("phone_md5"),
                os("device_id"),
                os("device_type"),
                s("age_band"),
                s("gender"),
                i32f("city_tier"),
                s("interest"),
            ],
            Table::SocialCampaigns => vec![
                s("campaign_id"),
                s("brand"),
                s("category"),
                date("start_date"),
                date("end_date"),
                i64f("spend_fen"),
                s("objective"),
                i32f("holdout_pct"),
            ],
            Table::SocialExposures | Table::NewsExposures => vec![
                s("user_id"),
                s("campaign_id"),
                ts(),
                s("placement"),
                s("kind"),
            ],
            Table::SocialHoldout => vec![s("user_id"), s("campaign_id"), s("grp")],
            Table::RetailUsers => vec![
                s("member_id"),
                os("phone"),
                os("email"),
                os("device_id"),
                os("device_type"),
                s("level"),
                s("region"),
                s("age_band"),
                s("gender"),
            ],
            Table::RetailOrders => vec![
                i64f("order_id"),
                s("member_id"),
                ts(),
                s("sku"),
                s("category"),
                s("brand"),
                i32f("quantity"),
                i64f("amount_fen"),
                s("channel"),
                os("store_id"),
            ],
            Table::BrandCrm => vec![
                s("customer_id"),
                os("phone_sha256"),
                os("email"),
                s("tier"),
                Field::new("opted_out", DataType::Boolean, false),
                s("consent"),
            ],
            Table::TruthPeople => vec![
                i64f("person_id"),
                os("social_user_id"),
                os("retail_member_id"),
                os("brand_customer_id"),
                i32f("age"),
                s("gender"),
                s("region"),
                i32f("city_tier"),
                s("interests"),
            ],
            Table::TruthCausedOrders => vec![i64f("order_id"), s("campaign_id")],
            Table::NewsUsers => vec![
                s("user_id"),
                os("phone_sha256"),
                os("device_id"),
                os("device_type"),
                s("age_band"),
                s("gender"),
                i32f("city_tier"),
            ],
            Table::TruthNewsUsers => vec![i64f("person_id"), s("news_user_id")],
        };
        Arc::new(Schema::new(fields))
    }
}

fn ts_builder() -> TimestampSecondBuilder {
    TimestampSecondBuilder::new().with_timezone(TZ)
}

fn finish(table: Table, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(table.schema(), columns).map_err(|e| Error::Internal(e.to_string()))
}

/// Rows of `social/users` for one chunk.
#[derive(Default)]
pub(crate) struct SocialUsers {
    pub(crate) user_id: StringBuilder,
    pub(crate) phone_md5: StringBuilder,
    pub(crate) device_id: StringBuilder,
    pub(crate) device_type: StringBuilder,
    pub(crate) age_band: StringBuilder,
    pub(crate) gender: StringBuilder,
    pub(crate) city_tier: Int32Builder,
    pub(crate) interest: StringBuilder,
}

impl SocialUsers {
    fn finish(mut self) -> Result<RecordBatch> {
        finish(
            Table::SocialUsers,
            vec![
                Arc::new(self.user_id.finish()),
                Arc::new(self.phone_md5.finish()),
                Arc::new(self.device_id.finish()),
                Arc::new(self.device_type.finish()),
                Arc::new(self.age_band.finish()),
                Arc::new(self.gender.finish()),
                Arc::new(self.city_tier.finish()),
                Arc::new(self.interest.finish()),
            ],
        )
    }
}

/// Rows of `social/exposures` for one chunk.
pub(crate) struct Exposures {
    pub(crate) user_id: StringBuilder,
    pub(crate) campaign_id: StringBuilder,
    pub(crate) ts: TimestampSecondBuilder,
    pub(crate) placement: StringBuilder,
    pub(crate) kind: StringBuilder,
}

impl Default for Exposures {
    fn default() -> Self {
        Self {
            user_id: StringBuilder::new(),
            campaign_id: StringBuilder::new(),
            ts: ts_builder(),
            placement: StringBuilder::new(),
            kind: StringBuilder::new(),
        }
    }
}

impl Exposures {
    fn finish(mut self, table: Table) -> Result<RecordBatch> {
        finish(
            table,
            vec![
                Arc::new(self.user_id.finish()),
                Arc::new(self.campaign_id.finish()),
                Arc::new(self.ts.finish()),
                Arc::new(self.placement.finish()),
                Arc::new(self.kind.finish()),
            ],
        )
    }
}

/// Rows of `social/holdout` for one chunk.
#[derive(Default)]
pub(crate) struct Holdout {
    pub(crate) user_id: StringBuilder,
    pub(crate) campaign_id: StringBuilder,
    pub(crate) grp: StringBuilder,
}

impl Holdout {
    fn finish(mut self) -> Result<RecordBatch> {
        finish(
            Table::SocialHoldout,
            vec![
                Arc::new(self.user_id.finish()),
                Arc::new(self.campaign_id.finish()),
                Arc::new(self.grp.finish()),
            ],
        )
    }
}

/// Rows of `retail/users` for one chunk.
#[derive(Default)]
pub(crate) struct RetailUsers {
    pub(crate) member_id: StringBuilder,
    pub(crate) phone: StringBuilder,
    pub(crate) email: StringBuilder,
    pub(crate) device_id: StringBuilder,
    pub(crate) device_type: StringBuilder,
    pub(crate) level: StringBuilder,
    pub(crate) region: StringBuilder,
    pub(crate) age_band: StringBuilder,
    pub(crate) gender: StringBuilder,
}

impl RetailUsers {
    fn finish(mut self) -> Result<RecordBatch> {
        finish(
            Table::RetailUsers,
            vec![
                Arc::new(self.member_id.finish()),
                Arc::new(self.phone.finish()),
                Arc::new(self.email.finish()),
                Arc::new(self.device_id.finish()),
                Arc::new(self.device_type.finish()),
                Arc::new(self.level.finish()),
                Arc::new(self.region.finish()),
                Arc::new(self.age_band.finish()),
                Arc::new(self.gender.finish()),
            ],
        )
    }
}

/// Rows of `retail/orders` for one chunk.
pub(crate) struct Orders {
    pub(crate) order_id: Int64Builder,
    pub(crate) member_id: StringBuilder,
    pub(crate) ts: TimestampSecondBuilder,
    pub(crate) sku: StringBuilder,
    pub(crate) category: StringBuilder,
    pub(crate) brand: StringBuilder,
    pub(crate) quantity: Int32Builder,
    pub(crate) amount_fen: Int64Builder,
    pub(crate) channel: StringBuilder,
    pub(crate) store_id: StringBuilder,
}

impl Default for Orders {
    fn default() -> Self {
        Self {
            order_id: Int64Builder::new(),
            member_id: StringBuilder::new(),
            ts: ts_builder(),
            sku: StringBuilder::new(),
            category: StringBuilder::new(),
            brand: StringBuilder::new(),
            quantity: Int32Builder::new(),
            amount_fen: Int64Builder::new(),
            channel: StringBuilder::new(),
            store_id: StringBuilder::new(),
        }
    }
}

impl Orders {
    fn finish(mut self) -> Result<RecordBatch> {
        finish(
            Table::RetailOrders,
            vec![
                Arc::new(self.order_id.finish()),
                Arc::new(self.member_id.finish()),
                Arc::new(self.ts.finish()),
                Arc::new(self.sku.finish()),
                Arc::new(self.category.finish()),
                Arc::new(self.brand.finish()),
                Arc::new(self.quantity.finish()),
                Arc::new(self.amount_fen.finish()),
                Arc::new(self.channel.finish()),
                Arc::new(self.store_id.finish()),
            ],
        )
    }
}

/// Rows of `brand/crm` for one chunk.
#[derive(Default)]
pub(crate) struct Crm {
    pub(crate) customer_id: StringBuilder,
    pub(crate) phone_sha256: StringBuilder,
    pub(crate) email: StringBuilder,
    pub(crate) tier: StringBuilder,
    pub(crate) opted_out: BooleanBuilder,
    pub(crate) consent: StringBuilder,
}

impl Crm {
    fn finish(mut self) -> Result<RecordBatch> {
        finish(
            Table::BrandCrm,
            vec![
                Arc::new(self.customer_id.finish()),
                Arc::new(self.phone_sha256.finish()),
                Arc::new(self.email.finish()),
                Arc::new(self.tier.finish()),
                Arc::new(self.opted_out.finish()),
                Arc::new(self.consent.finish()),
            ],
        )
    }
}

/// Rows of `news/users` for one chunk.
#[derive(Default)]
pub(crate) struct NewsUsers {
    pub(crate) user_id: StringBuilder,
    pub(crate) phone_sha256: StringBuilder,
    pub(crate) device_id: StringBuilder,
    pub(crate) device_type: StringBuilder,
    pub(crate) age_band: StringBuilder,
    pub(crate) gender: StringBuilder,
    pub(crate) city_tier: Int32Builder,
}

impl NewsUsers {
    fn finish(mut self) -> Result<RecordBatch> {
        finish(
            Table::NewsUsers,
            vec![
                Arc::new(self.user_id.finish()),
                Arc::new(self.phone_sha256.finish()),
                Arc::new(self.device_id.finish()),
                Arc::new(self.device_type.finish()),
                Arc::new(self.age_band.finish()),
                Arc::new(self.gender.finish()),
                Arc::new(self.city_tier.finish()),
            ],
        )
    }
}

/// Rows of `truth/news_users` for one chunk: which person each news user is.
#[derive(Default)]
pub(crate) struct NewsPeople {
    pub(crate) person_id: Int64Builder,
    pub(crate) news_user_id: StringBuilder,
}

impl NewsPeople {
    fn finish(mut self) -> Result<RecordBatch> {
        finish(
            Table::TruthNewsUsers,
            vec![
                Arc::new(self.person_id.finish()),
                Arc::new(self.news_user_id.finish()),
            ],
        )
    }
}

/// Rows of `truth/people` for one chunk.
#[derive(Default)]
pub(crate) struct People {
    pub(crate) person_id: Int64Builder,
    pub(crate) social_user_id: StringBuilder,
    pub(crate) retail_member_id: StringBuilder,
    pub(crate) brand_customer_id: StringBuilder,
    pub(crate) age: Int32Builder,
    pub(crate) gender: StringBuilder,
    pub(crate) region: StringBuilder,
    pub(crate) city_tier: Int32Builder,
    pub(crate) interests: StringBuilder,
}

impl People {
    fn finish(mut self) -> Result<RecordBatch> {
        finish(
            Table::TruthPeople,
            vec![
                Arc::new(self.person_id.finish()),
                Arc::new(self.social_user_id.finish()),
                Arc::new(self.retail_member_id.finish()),
                Arc::new(self.brand_customer_id.finish()),
                Arc::new(self.age.finish()),
                Arc::new(self.gender.finish()),
                Arc::new(self.region.finish()),
                Arc::new(self.city_tier.finish()),
                Arc::new(self.interests.finish()),
            ],
        )
    }
}

/// Rows of `truth/caused_orders` for one chunk.
#[derive(Default)]
pub(crate) struct CausedOrders {
    pub(crate) order_id: Int64Builder,
    pub(crate) campaign_id: StringBuilder,
}

impl CausedOrders {
    fn finish(mut self) -> Result<RecordBatch> {
        finish(
            Table::TruthCausedOrders,
            vec![
                Arc::new(self.order_id.finish()),
                Arc::new(self.campaign_id.finish()),
            ],
        )
    }
}

/// The rows one chunk of people contributes to each table.
#[derive(Default)]
pub(crate) struct ChunkRows {
    pub(crate) social_users: SocialUsers,
    pub(crate) exposures: Exposures,
    pub(crate) holdout: Holdout,
    pub(crate) retail_users: RetailUsers,
    pub(crate) orders: Orders,
    pub(crate) crm: Crm,
    pub(crate) people: People,
    pub(crate) caused: CausedOrders,
    pub(crate) news_users: NewsUsers,
    pub(crate) news_exposures: Exposures,
    pub(crate) news_people: NewsPeople,
}

impl ChunkRows {
    /// Finishes every table into a batch, with rows shuffled within the chunk so that no
    /// table's row order lines up with another party's (or with the person index).
    /// The news tables come last (and only with two media parties), so the other
    /// tables' shuffles are the same with or without news.
    pub(crate) fn finish(self, rng: &mut ChaCha8Rng, media: u8) -> Result<Vec<(Table, Encoded)>> {
        let mut batches = vec![
            (Table::SocialUsers, self.social_users.finish()?),
            (
                Table::SocialExposures,
                self.exposures.finish(Table::SocialExposures)?,
            ),
            (Table::SocialHoldout, self.holdout.finish()?),
            (Table::RetailUsers, self.retail_users.finish()?),
            (Table::RetailOrders, self.orders.finish()?),
            (Table::BrandCrm, self.crm.finish()?),
            (Table::TruthPeople, self.people.finish()?),
            (Table::TruthCausedOrders, self.caused.finish()?),
        ];
        if media >= 2 {
            batches.push((Table::NewsUsers, self.news_users.finish()?));
            batches.push((
                Table::NewsExposures,
                self.news_exposures.finish(Table::NewsExposures)?,
            ));
            batches.push((Table::TruthNewsUsers, self.news_people.finish()?));
        }
        batches
            .into_iter()
            .map(|(table, batch)| {
                if table == Table::TruthPeople || table == Table::TruthNewsUsers {
                    // The truth table stays in person order: it is the key, not a party's data.
                    return Ok((table, Encoded::new(batch)?));
                }
                let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
                order.shuffle(rng);
                let shuffled = take_record_batch(&batch, &UInt32Array::from(order))
                    .map_err(|e| Error::Internal(e.to_string()))?;
                Ok((table, Encoded::new(shuffled)?))
            })
            .collect()
    }
}

/// Builds the one-batch `social/campaigns` table.
pub(crate) fn campaigns_batch(campaigns: &[crate::world::Campaign]) -> Result<RecordBatch> {
    use crate::world::{BRANDS, CATEGORIES, EPOCH_DAYS_AT_START};
    let mut id = StringBuilder::new();
    let mut brand = StringBuilder::new();
    let mut category = StringBuilder::new();
    let mut start = Date32Builder::new();
    let mut end = Date32Builder::new();
    let mut spend = Int64Builder::new();
    let mut objective = StringBuilder::new();
    let mut holdout = Int32Builder::new();
    for c in campaigns {
        id.append_value(&c.id);
        brand.append_value(BRANDS[c.brand].0);
        category.append_value(CATEGORIES[c.category()]);
        start.append_value(EPOCH_DAYS_AT_START + c.start_day as i32);
        end.append_value(EPOCH_DAYS_AT_START + c.end_day as i32);
        spend.append_value(c.spend_fen);
        objective.append_value(c.objective);
        holdout.append_value(c.holdout_pct as i32);
    }
    finish(
        Table::SocialCampaigns,
        vec![
            Arc::new(id.finish()),
            Arc::new(brand.finish()),
            Arc::new(category.finish()),
            Arc::new(start.finish()),
            Arc::new(end.finish()),
            Arc::new(spend.finish()),
            Arc::new(objective.finish()),
            Arc::new(holdout.finish()),
        ],
    )
}

/// A batch with its CSV rows already encoded (by the generating worker, so that the
/// single writer thread only appends bytes and encodes Parquet).
pub(crate) struct Encoded {
    batch: RecordBatch,
    csv: Vec<u8>,
}

impl Encoded {
    pub(crate) fn new(batch: RecordBatch) -> Result<Self> {
        let mut csv = Vec::with_capacity(batch.num_rows() * 64);
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(false)
            .build(&mut csv);
        w.write(&batch)
            .map_err(|e| Error::Internal(e.to_string()))?;
        drop(w);
        Ok(Self { batch, csv })
    }
}

/// Rows per Parquet row group: small enough that the writer's buffers stay a few tens
/// of MB per table whatever the scale.
const ROW_GROUP_ROWS: usize = 256 * 1024;

/// Writes one table as `<name>.csv` and `<name>.parquet` under a directory.
pub(crate) struct TableWriter {
    csv: BufWriter<File>,
    parquet: ArrowWriter<BufWriter<File>>,
    pub(crate) rows: u64,
}

impl TableWriter {
    pub(crate) fn create(dir: &Path, table: Table) -> Result<Self> {
        let base: PathBuf = dir.join(table.name());
        if let Some(parent) = base.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let csv_path = base.with_extension("csv");
        let pq_path = base.with_extension("parquet");
        let csv_file = File::create(&csv_path).map_err(|e| Error::io(&csv_path, e))?;
        let pq_file = File::create(&pq_path).map_err(|e| Error::io(&pq_path, e))?;
        let mut csv = BufWriter::with_capacity(1 << 20, csv_file);
        // The header line, from a writer over no rows.
        arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut csv)
            .write(&RecordBatch::new_empty(table.schema()))
            .map_err(|e| Error::Write(e.to_string()))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by("jingteng-synth".to_string())
            .build();
        let parquet = ArrowWriter::try_new(
            BufWriter::with_capacity(1 << 20, pq_file),
            table.schema(),
            Some(props),
        )
        .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Self {
            csv,
            parquet,
            rows: 0,
        })
    }

    pub(crate) fn write(&mut self, encoded: &Encoded) -> Result<()> {
        use std::io::Write;
        self.csv
            .write_all(&encoded.csv)
            .map_err(|e| Error::Write(e.to_string()))?;
        self.parquet
            .write(&encoded.batch)
            .map_err(|e| Error::Write(e.to_string()))?;
        self.rows += encoded.batch.num_rows() as u64;
        Ok(())
    }

    pub(crate) fn close(self) -> Result<u64> {
        use std::io::Write;
        let mut csv = self.csv;
        csv.flush().map_err(|e| Error::Write(e.to_string()))?;
        let mut parquet = self
            .parquet
            .into_inner()
            .map_err(|e| Error::Write(e.to_string()))?;
        parquet.flush().map_err(|e| Error::Write(e.to_string()))?;
        Ok(self.rows)
    }
}
