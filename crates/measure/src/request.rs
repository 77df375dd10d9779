//! One measurement as a value: what `jingteng measure` asks for — run in local mode, or
//! sent to the host of a collaboration and run there over its joined view — and the
//! report that comes back. The host checks the settings as local mode does; every
//! figure in the report was released by the engine for the asking analyst.

use jingteng_engine::{Engine, ViewInfo};
use serde::{Deserialize, Serialize};

use crate::{
    AttributionReport, AttributionSettings, CampaignId, Dimension, LiftReport, LiftSettings,
    ProgramReport, ReachReport, Result, Sources,
};

/// A measurement and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Measure {
    /// Attribution of the retailer's orders to the media party's exposures.
    Attribution {
        /// The attribution rules.
        settings: AttributionSettings,
        /// Only this campaign.
        campaign: Option<CampaignId>,
        /// Breakdowns (each is one more released query).
        by: Vec<Dimension>,
    },
    /// Incremental lift from the randomised holdout.
    Lift {
        /// How conversions are counted and the intervals computed.
        settings: LiftSettings,
        /// Only this campaign.
        campaign: Option<CampaignId>,
    },
    /// Reach and frequency, de-duplicated across the media parties.
    Reach {
        /// Only this campaign.
        campaign: Option<CampaignId>,
    },
    /// Program metrics per month across campaigns and brands.
    Program {
        /// The attribution rules of the conversions.
        settings: AttributionSettings,
    },
}

/// A measurement's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    /// See [`Measure::Attribution`].
    Attribution(AttributionReport),
    /// See [`Measure::Lift`].
    Lift(LiftReport),
    /// See [`Measure::Reach`].
    Reach(ReachReport),
    /// See [`Measure::Program`].
    Program(ProgramReport),
}

impl Measure {
    /// Runs the measurement over the joined view `info` for `analyst` (the budget's
    /// key), with the default sources (`social` exposures, `retail` orders).
    pub async fn run(&self, engine: &mut Engine, info: &ViewInfo, analyst: &str) -> Result<Report> {
        let sources = Sources::default();
        Ok(match self {
            Self::Attribution {
                settings,
                campaign,
                by,
            } => Report::Attribution(
                crate::attribute(
                    engine,
                    info,
                    settings,
                    &sources,
                    campaign.as_ref(),
                    by,
                    analyst,
                )
                .await?,
            ),
            Self::Lift { settings, campaign } => Report::Lift(
                crate::lift(engine, info, settings, &sources, campaign.as_ref(), analyst).await?,
            ),
            Self::Reach { campaign } => {
                let parties = crate::media_parties(engine, info);
                Report::Reach(
                    crate::reach(engine, info, &parties, campaign.as_ref(), analyst).await?,
                )
            }
            Self::Program { settings } => {
                Report::Program(crate::program(engine, info, settings, &sources, analyst).await?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measurement_goes_over_the_wire_and_back_unchanged() {
        let all = [
            Measure::Attribution {
                settings: AttributionSettings::default(),
                campaign: Some(CampaignId::parse("C01").unwrap()),
                by: vec![Dimension::Placement, Dimension::Day],
            },
            Measure::Lift {
                settings: LiftSettings::default(),
                campaign: None,
            },
            Measure::Reach { campaign: None },
            Measure::Program {
                settings: AttributionSettings::default(),
            },
        ];
        for m in all {
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<Measure>(&json).unwrap(), m, "{json}");
        }
    }

    #[test]
    fn a_bad_campaign_id_or_an_unknown_field_is_refused_when_read() {
        let bad = r#"{"kind":"reach","campaign":"C01' OR 1=1 --"}"#;
        let e = serde_json::from_str::<Measure>(bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("letters, digits"), "{e}");
        let extra = r#"{"kind":"reach","campaign":null,"sql":"SELECT 1"}"#;
        let e = serde_json::from_str::<Measure>(extra)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
    }
}
