"""The synthetic CRM export behind `tiering generate` and `tiering demo`.

It writes the four canonical tables (SPEC section 3) and `truth.csv`, the answer key the models are
measured against (training never reads it):

- every closed opportunity's true win probability is `WIN_MODEL.probability(...)` of quantities the
  export shows before the opportunity's `created_date`: the account's fit, its recency-weighted
  engagement and intent, and its earlier won and lost opportunities. Nothing hidden enters it, so a
  perfect point-in-time model could recover it; the outcome is a Bernoulli draw from it.
- every account's true expected deal size is the mean amount of a won deal with it (see
  `expected_deal_size`).
- `truth_creation.csv` holds each account's true opportunity-creation rate (a Poisson rate per day, plus the
  date of the one follow-up a research surge may cause), the answer key of the pipeline-propensity learner.

Firmographics in the truth are the generator's complete values; the export then loses some of them
and mangles the case and spacing of a few, as real CRMs do.

Everything is vectorised with numpy; engagement and intent are generated and written a chunk of
accounts at a time so 100,000 accounts (about 20 million events) fit in little memory.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from rich.console import Group
from rich.table import Column, Table
from rich.text import Text

from features.config import CHANNELS
from features.families import resolve_links
from ingest.files import atomic_path


class FileFormat(StrEnum):
    """The format of the generated tables (`tiering generate --format`)."""

    CSV = "csv"
    PARQUET = "parquet"


TRUTH_FILE = "truth.csv"
PILOT_TRUTH_FILE = "truth_pilot.csv"  # a planted pilot: each pilot account's group and its extra opportunities
CREATION_TRUTH_FILE = "truth_creation.csv"  # each account's true opportunity-creation rate (pipeline propensity)

HISTORY_DAYS = 730  # opportunities are created over the two years ending at end_date
LOOKBACK_DAYS = 180  # engagement and intent older than this do not count for an opportunity
HALF_LIFE_DAYS = 30.0
MIN_SALES_CYCLE_DAYS = 20
MAX_SALES_CYCLE_DAYS = 200
SECONDS_PER_DAY = 86_400
ACCOUNTS_PER_CHUNK = 10_000  # fixed, so the random streams (and the files) do not depend on memory

# --- Accounts ------------------------------------------------------------------------------------

# industry: (share of accounts, log revenue-per-employee offset, log deal-size effect, name nouns)
INDUSTRIES: dict[str, tuple[float, float, float, tuple[str, ...]]] = {
    "software": (0.16, 0.35, 0.10, ("Software", "Labs", "Systems", "Cloud", "Technologies", "Digital")),
    "financial services": (0.10, 0.55, 0.25, ("Capital", "Financial", "Bank", "Insurance", "Partners", "Investments")),
    "healthcare": (0.10, 0.05, 0.15, ("Health", "Medical", "Care", "Biosciences", "Clinics", "Pharma")),
    "manufacturing": (
        0.13,
        0.15,
        0.00,
        ("Manufacturing", "Industries", "Components", "Machinery", "Fabrication", "Materials"),
    ),
    "retail": (0.10, -0.20, -0.10, ("Retail", "Stores", "Brands", "Outfitters", "Market", "Goods")),
    "education": (0.06, -0.60, -0.35, ("Learning", "Academy", "University", "Education", "Schools", "Institute")),
    "government": (0.05, -0.30, 0.20, ("Agency", "Authority", "Council", "Department", "Services", "Commission")),
    "media": (0.06, 0.00, -0.15, ("Media", "Studios", "Publishing", "Broadcasting", "Entertainment", "Press")),
    "energy": (0.05, 0.70, 0.15, ("Energy", "Power", "Renewables", "Utilities", "Resources", "Solar")),
    "logistics": (0.08, -0.10, -0.05, ("Logistics", "Freight", "Shipping", "Transport", "Supply", "Express")),
    "telecom": (0.05, 0.40, 0.20, ("Telecom", "Networks", "Communications", "Wireless", "Connect", "Mobile")),
    "real estate": (0.06, 0.10, -0.20, ("Properties", "Realty", "Estates", "Development", "Housing", "Land")),
}
INDUSTRY_NAMES = np.array(list(INDUSTRIES))
INDUSTRY_SHARES = np.array([spec[0] for spec in INDUSTRIES.values()])
INDUSTRY_REVENUE_PER_EMPLOYEE = np.array([spec[1] for spec in INDUSTRIES.values()])
INDUSTRY_DEAL_EFFECT = np.array([spec[2] for spec in INDUSTRIES.values()])
NAME_NOUNS = np.array([spec[3] for spec in INDUSTRIES.values()])  # (industry, noun)
NAME_PREFIXES = np.array(
    "Acme Apex Atlas Aurora Beacon Brightline Cascade Cedar Crescent Evergreen Falcon Frontier Granite "
    "Harbor Horizon Ironwood Juniper Keystone Lakeside Liberty Meridian Northwind Oakridge Orion "
    "Pinnacle Pioneer Quantum Redwood Riverside Sapphire Sentinel Silverline Summit Sunrise Trident "
    "Unity Vanguard Vertex Westbrook Bluewater".split()
)

# region: (share of accounts, legal suffixes (four each), {country: share within the region})
REGIONS: dict[str, tuple[float, tuple[str, ...], dict[str, float]]] = {
    "north america": (0.45, ("Inc", "LLC", "Corp", "Group"), {"United States": 0.86, "Canada": 0.14}),
    "emea": (
        0.30,
        ("Ltd", "Group", "SA", "Holdings"),
        {
            "United Kingdom": 0.26,
            "Germany": 0.20,
            "France": 0.14,
            "Netherlands": 0.09,
            "Spain": 0.06,
            "Italy": 0.05,
            "Sweden": 0.05,
            "Ireland": 0.04,
            "Switzerland": 0.04,
            "Israel": 0.03,
            "United Arab Emirates": 0.02,
            "South Africa": 0.02,
        },
    ),
    "apac": (
        0.17,
        ("Pty Ltd", "Ltd", "Holdings", "Group"),
        {"Australia": 0.27, "Japan": 0.20, "India": 0.20, "Singapore": 0.13, "South Korea": 0.10, "New Zealand": 0.10},
    ),
    "latam": (
        0.08,
        ("SA", "Ltda", "Group", "Holdings"),
        {"Brazil": 0.40, "Mexico": 0.30, "Argentina": 0.10, "Chile": 0.10, "Colombia": 0.10},
    ),
}
REGION_NAMES = np.array(list(REGIONS))
LEGAL_SUFFIXES = np.array([spec[1] for spec in REGIONS.values()])  # (region, suffix)
OWNER_NAMES = np.array(
    [
        "ana.silva@example.com",
        "ben.okafor@example.com",
        "chloe.martin@example.com",
        "dev.patel@example.com",
        "emma.schmidt@example.com",
        "felix.tanaka@example.com",
        "grace.kim@example.com",
        "hugo.rossi@example.com",
        "isla.brown@example.com",
    ]
)
COUNTRY_NAMES = np.array([country for spec in REGIONS.values() for country in spec[2]])
COUNTRY_REGION = np.array([r for r, spec in enumerate(REGIONS.values()) for _ in spec[2]])
COUNTRY_SHARES = np.array([spec[0] * share for spec in REGIONS.values() for share in spec[2].values()])

# tool: adoption probability for a company of median size (bigger companies run more tools)
TECH_TOOLS: dict[str, float] = {
    "salesforce": 0.30,
    "hubspot": 0.22,
    "snowflake": 0.12,
    "aws": 0.45,
    "azure": 0.28,
    "gcp": 0.15,
    "segment": 0.08,
    "oracle": 0.12,
    "sap": 0.10,
    "marketo": 0.10,
    "zendesk": 0.18,
    "slack": 0.40,
    "workday": 0.08,
    "tableau": 0.12,
    "databricks": 0.06,
    "shopify": 0.06,
}
TECH_NAMES = np.array(list(TECH_TOOLS))

MEDIAN_EMPLOYEES = 250
LOG_EMPLOYEES_SD = 1.7
MEDIAN_REVENUE_PER_EMPLOYEE = 180_000
PARENT_SHARE = 0.03
# With families: accounts come in families of these sizes (drawn with these shares), each the top account, its
# children and, from the fourth member on, grandchildren under the second one. Buying is a family matter: the
# activity before a deal shows up at the family's other entities, and the true win probability reads the family's
# engagement and intent (the whole family's points), not the entity's own.
FAMILY_SIZES = np.array([1, 2, 3, 4, 5, 6])
FAMILY_SIZE_SHARES = np.array([0.40, 0.15, 0.15, 0.12, 0.10, 0.08])
SURGE_SHARE = 0.04
SURGE_DAYS = 14

# --- Opportunities and deal size --------------------------------------------------------------------

OPPORTUNITIES_PER_ACCOUNT = 10.0
OPPORTUNITY_COUNT_SHAPE = 0.8  # gamma mixing: heavy-tailed counts, about 12% of accounts with none
SURGE_FOLLOW_UP_SHARE = 0.6  # share of research surges that turn into an opportunity weeks later

PRODUCTS = np.array(["starter", "professional", "enterprise", "analytics add-on", "data platform", "services"])
PRODUCT_PRICE_EFFECT = np.array([-1.1, -0.2, 0.6, -0.7, 0.9, -0.5])  # on log amount
SIZE_BAND_EDGES = np.array([200, 2_000])  # employees: small < 200 <= mid < 2,000 <= large
PRODUCT_MIX = np.array(  # rows: size band; columns: PRODUCTS
    [
        [0.45, 0.30, 0.02, 0.10, 0.03, 0.10],
        [0.15, 0.40, 0.15, 0.12, 0.08, 0.10],
        [0.03, 0.22, 0.35, 0.10, 0.20, 0.10],
    ]
)
DEAL_INTERCEPT = 6.3
DEAL_LOG_EMPLOYEES = 0.30
DEAL_LOG_REVENUE = 0.15
DEAL_NOISE_SIGMA = 0.55

# --- Engagement and intent -------------------------------------------------------------------------

CHANNEL_NAMES = pa.array(CHANNELS)
#                                    web   download open  click event demo  meeting
BACKGROUND_CHANNEL_MIX = np.array([0.450, 0.070, 0.300, 0.120, 0.035, 0.010, 0.015])
PRE_OPPORTUNITY_CHANNEL_MIX = np.array([0.32, 0.16, 0.16, 0.16, 0.06, 0.08, 0.06])
OPEN_DEAL_CHANNEL_MIX = np.array([0.00, 0.00, 0.45, 0.20, 0.00, 0.00, 0.35])
SURGE_CHANNELS = np.array(
    [CHANNELS.index(c) for c in ("web_visit", "content_download", "email_click", "event_attended", "demo_request")]
)
MULTI_COUNT_CHANNELS = np.array([CHANNELS.index(c) for c in ("web_visit", "email_open")])  # page views, re-opens

BACKGROUND_EVENTS_PER_ACCOUNT = 120.0  # over the whole history, at average propensity
PRE_OPPORTUNITY_EVENTS = 5.0  # per opportunity at average heat
PRE_OPPORTUNITY_LEAD_DAYS = 18.0  # mean lead: activity builds up in the weeks before creation
OPEN_DEAL_EVENTS_PER_30_DAYS = 1.0
SURGE_EVENTS_PER_CHANNEL = 8.0
SURGE_CHANNEL_COUNT = 3

INTENT_TOPICS = pa.array(
    [
        "crm",
        "marketing automation",
        "data warehouse",
        "analytics",
        "security",
        "cloud migration",
        "customer data platform",
        "sales enablement",
    ]
)
INTENT_TOPIC_MIX = np.array([0.17, 0.15, 0.13, 0.16, 0.12, 0.11, 0.08, 0.08])
BACKGROUND_INTENT_ROWS = 16.0
PRE_OPPORTUNITY_INTENT_ROWS = 1.5
PRE_OPPORTUNITY_INTENT_LEAD_DAYS = 20.0
SURGE_INTENT_ROWS_PER_TOPIC = 4.0
SURGE_TOPIC_COUNT = 3

# --- The truth -------------------------------------------------------------------------------------

ICP_INDUSTRIES = ("software", "financial services", "healthcare", "manufacturing")
ICP_REGIONS = ("north america", "emea")  # every country of these regions
ICP_EMPLOYEES = (200, 20_000)
ICP_TECH = ("salesforce", "snowflake", "aws", "hubspot", "segment")
MAX_TECH_MATCHES = 2
TRUTH_CHANNEL_WEIGHTS: dict[str, float] = {
    "web_visit": 0.3,
    "content_download": 1.0,
    "email_open": 0.1,
    "email_click": 0.5,
    "event_attended": 2.0,
    "demo_request": 6.0,
    "sales_meeting": 4.0,
}
TRUTH_WEIGHT_BY_CHANNEL = np.array([TRUTH_CHANNEL_WEIGHTS[channel] for channel in CHANNELS])


@dataclass(frozen=True)
class TrueWinModel:
    """The true win probability: a logistic function of what the export shows before creation.

    logit = intercept + industry_fit * [industry in ICP_INDUSTRIES]
            + size_fit * [employees in ICP_EMPLOYEES] + geography_fit * [region in ICP_REGIONS]
            + tech_match * min(#ICP_TECH in tech_stack, 2)
            + engagement * log1p(sum over events of TRUTH_CHANNEL_WEIGHTS[channel] * count * decay)
            + intent * log1p(sum over intent rows of score / 100 * decay)
            + prior_won * log1p(#won) + prior_lost * log1p(#lost)
    where decay = 0.5 ** (age_days / 30) for events with 0 < age_days <= 180 before created_date,
    and #won / #lost count the account's opportunities closed strictly before created_date.
    """

    intercept: float = -4.35
    industry_fit: float = 0.7
    size_fit: float = 0.4
    geography_fit: float = 0.3
    tech_match: float = 0.25
    engagement: float = 0.6
    intent: float = 0.35
    prior_won: float = 0.5
    prior_lost: float = -0.25

    def logit(
        self,
        industry_fit,
        size_fit,
        geography_fit,
        tech_matches,
        engagement_points,
        intent_points,
        prior_won,
        prior_lost,
    ):
        return (
            self.intercept
            + self.industry_fit * industry_fit
            + self.size_fit * size_fit
            + self.geography_fit * geography_fit
            + self.tech_match * np.minimum(tech_matches, MAX_TECH_MATCHES)
            + self.engagement * np.log1p(engagement_points)
            + self.intent * np.log1p(intent_points)
            + self.prior_won * np.log1p(prior_won)
            + self.prior_lost * np.log1p(prior_lost)
        )

    def probability(self, *args, **kwargs):
        return 1.0 / (1.0 + np.exp(-self.logit(*args, **kwargs)))


WIN_MODEL = TrueWinModel()

# --- Output ----------------------------------------------------------------------------------------

ENGAGEMENT_SCHEMA = pa.schema(
    [("account_id", pa.string()), ("timestamp", pa.timestamp("s")), ("channel", pa.string()), ("count", pa.int32())]
)
INTENT_SCHEMA = pa.schema(
    [("account_id", pa.string()), ("date", pa.date32()), ("topic", pa.string()), ("score", pa.int32())]
)


@dataclass(frozen=True)
class GenerationSummary:
    out_dir: Path
    file_format: str
    rows: dict[str, int]  # file name -> data rows written
    win_rate: float  # share of closed opportunities that were won
    first_date: np.datetime64  # first day of activity history
    last_date: np.datetime64  # end_date
    seconds: float

    def render(self) -> Group:
        table = Table("file", Column("rows", justify="right"))
        for name, count in self.rows.items():
            table.add_row(name, f"{count:,}")
        return Group(
            Text(f"Synthetic CRM export written to {self.out_dir} in {self.seconds:.1f} s"),
            table,
            Text(
                f"Activity from {self.first_date} to {self.last_date}; {self.win_rate:.1%} of closed opportunities "
                f"won. "
                f"{TRUTH_FILE} holds the true answers: training never reads it."
            ),
        )


@dataclass(frozen=True)
class _Calendar:
    """Days count from `origin`, the first day of activity: a full look-back before the first opportunity."""

    origin: np.datetime64
    first_created_day: int
    last_day: int  # end_date

    @classmethod
    def ending(cls, end_date: str) -> _Calendar:
        try:
            end = np.datetime64(end_date, "D")
        except ValueError:
            raise ValueError(f"end_date must be an ISO date like 2026-06-30, not {end_date!r}") from None
        last_day = HISTORY_DAYS + LOOKBACK_DAYS
        return cls(origin=end - last_day, first_created_day=LOOKBACK_DAYS, last_day=last_day)

    @property
    def end_of_history_second(self) -> int:
        return (self.last_day + 1) * SECONDS_PER_DAY

    def dates(self, days: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
        return pa.array(self.origin + days.astype("timedelta64[D]"), type=pa.date32(), mask=missing)

    def timestamps(self, seconds: np.ndarray) -> pa.Array:
        return pa.array(self.origin.astype("datetime64[s]") + seconds.astype("timedelta64[s]"), type=pa.timestamp("s"))


@dataclass
class _Accounts:
    ids: pa.Array
    industry: np.ndarray  # index into INDUSTRY_NAMES
    country: np.ndarray  # index into COUNTRY_NAMES
    employees: np.ndarray
    revenue: np.ndarray
    tech: np.ndarray  # (accounts, tools) bool
    propensity: np.ndarray  # standard normal: engaged accounts see more activity and more deals
    surge_day: np.ndarray  # first day of a research surge, -1 for none
    family_top: np.ndarray | None = None  # with families: each account's top account (itself for a top)
    family_parent: np.ndarray | None = None  # with families: each account's parent, -1 for a top account

    def __len__(self) -> int:
        return len(self.industry)

    @property
    def region(self) -> np.ndarray:
        return COUNTRY_REGION[self.country]

    @property
    def activity_rate(self) -> np.ndarray:
        return np.exp(0.7 * self.propensity - 0.7**2 / 2)  # mean 1

    def log_deal_size_base(self) -> np.ndarray:
        return (
            DEAL_INTERCEPT
            + DEAL_LOG_EMPLOYEES * np.log(self.employees)
            + DEAL_LOG_REVENUE * np.log(self.revenue)
            + INDUSTRY_DEAL_EFFECT[self.industry]
        )

    def size_band(self) -> np.ndarray:
        return np.searchsorted(SIZE_BAND_EDGES, self.employees, side="right")

    def expected_deal_size(self) -> np.ndarray:
        """E[amount of a won deal]: product mix of the account's size band, lognormal noise mean."""
        product_factor = PRODUCT_MIX[self.size_band()] @ np.exp(PRODUCT_PRICE_EFFECT)
        return np.exp(self.log_deal_size_base() + DEAL_NOISE_SIGMA**2 / 2) * product_factor

    def fit_terms(self) -> dict[str, np.ndarray]:
        tech_columns = [list(TECH_NAMES).index(tool) for tool in ICP_TECH]
        return {
            "industry_fit": np.isin(INDUSTRY_NAMES[self.industry], ICP_INDUSTRIES).astype(float),
            "size_fit": ((self.employees >= ICP_EMPLOYEES[0]) & (self.employees <= ICP_EMPLOYEES[1])).astype(float),
            "geography_fit": np.isin(REGION_NAMES[self.region], ICP_REGIONS).astype(float),
            "tech_matches": self.tech[:, tech_columns].sum(axis=1).astype(float),
        }


@dataclass
class _Opportunities:
    account: np.ndarray
    created_day: np.ndarray
    close_day: np.ndarray  # would-be close day; beyond end_date for open opportunities
    product: np.ndarray
    heat: np.ndarray  # how much buying activity precedes it (seen only through the events it causes)
    amount: np.ndarray
    last_day: int  # end_date: an opportunity that would close later is still open
    # The truth of opportunity creation, per account: the Poisson rate of background creations per day (uniform
    # over the creation days) and the day of the one follow-up creation a research surge causes (-1: none).
    creation_rate: np.ndarray
    follow_up_day: np.ndarray

    def __len__(self) -> int:
        return len(self.account)

    @property
    def is_open(self) -> np.ndarray:
        return self.close_day > self.last_day


class PilotOutsideHistory(ValueError):
    """A planted pilot's period (or its pre-period) does not fit inside the export's history."""


@dataclass(frozen=True)
class PlantedPilot:
    """A pilot the generator runs on its accounts: from `start`, treated accounts open opportunities `lift` times
    more often (0.2: 20% more), for `horizon_days` and beyond; control accounts as before."""

    start: str
    lift: float
    horizon_days: int = 90
    seed: int = 1


def generate_export(
    out_dir: Path,
    n_accounts: int = 5000,
    seed: int = 7,
    file_format: str = "csv",
    end_date: str = "2026-06-30",
    engagement_shift: tuple[str, float] | None = None,
    pilot: PlantedPilot | None = None,
    families: bool = False,
) -> GenerationSummary:
    """Write a synthetic CRM export (canonical tables plus `truth.csv`) into `out_dir`.

    The same arguments always give byte-identical files. All files appear together at the end, or,
    on failure, none does. `engagement_shift=(date, factor)` plants a population shift for drift tests:
    from that date on, every account's engagement is `factor` times as frequent (the default plants none).
    `pilot` plants a treatment effect, with `assignment.csv` and `pilot.json` as `tiering pilot design` writes them
    and the truth in `truth_pilot.csv`.
    `families` links accounts into families (parent_account_id) whose deals follow the family's buying behaviour
    (see FAMILY_SIZES); the default export keeps its few random parent links that mean nothing.
    """
    if file_format not in set(FileFormat):
        raise ValueError(f"file_format must be one of {', '.join(FileFormat)}, not {file_format!r}")
    if n_accounts < 1:
        raise ValueError(f"n_accounts must be at least 1, not {n_accounts}")
    started = time.perf_counter()
    calendar = _Calendar.ending(end_date)
    shift = None
    if engagement_shift is not None:
        shift_day = int((np.datetime64(engagement_shift[0], "D") - calendar.origin).astype(np.int64))
        shift = (shift_day * SECONDS_PER_DAY, float(engagement_shift[1]))
    account_seed, opportunity_seed, activity_seed, outcome_seed, export_seed = np.random.SeedSequence(seed).spawn(5)

    accounts = _draw_accounts(np.random.default_rng(account_seed), n_accounts, calendar)
    if families:  # its own stream (the seventh child seed), so the rest of the export draws as without families
        _draw_families(np.random.default_rng(np.random.SeedSequence(seed).spawn(7)[6]), accounts)
    planted = _plan_pilot(pilot, accounts, calendar) if pilot is not None else None
    opportunities = _draw_opportunities(
        np.random.default_rng(opportunity_seed),
        accounts,
        calendar,
        # Its own stream: an export without a pilot draws exactly what it drew before pilots existed.
        None if planted is None else (planted, np.random.default_rng(np.random.SeedSequence(seed).spawn(6)[5])),
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _StagedFiles(out_dir) as staged:
        engagement_points, intent_points, activity_rows = _write_activity(
            staged, accounts, opportunities, calendar, file_format, activity_seed, shift
        )
        won, win_probability = _draw_outcomes(
            np.random.default_rng(outcome_seed), accounts, opportunities, engagement_points, intent_points, calendar
        )
        tables = {
            "accounts": _accounts_table(np.random.default_rng(export_seed), accounts),
            "opportunities": _opportunities_table(accounts, opportunities, won, calendar),
        }
        for name, table in tables.items():
            _write_table(table, staged.table_path(name, file_format), file_format)
        truth = _truth_table(
            accounts, opportunities, tables["opportunities"]["opportunity_id"].combine_chunks(), win_probability
        )
        _write_table(truth, staged.path(TRUTH_FILE), "csv")
        creation_truth = _creation_truth_table(accounts, opportunities, calendar)
        _write_table(creation_truth, staged.path(CREATION_TRUTH_FILE), "csv")
        if planted is not None:
            _write_pilot(staged, planted, accounts, opportunities, tables["opportunities"])

    closed = ~opportunities.is_open
    rows = {f"{name}.{file_format}": table.num_rows for name, table in tables.items()}
    rows.update({f"{name}.{file_format}": count for name, count in activity_rows.items()})
    rows[TRUTH_FILE] = truth.num_rows
    rows[CREATION_TRUTH_FILE] = creation_truth.num_rows
    if planted is not None:
        rows[PILOT_TRUTH_FILE] = len(planted.assignment)
    return GenerationSummary(
        out_dir=out_dir,
        file_format=file_format,
        rows=rows,
        win_rate=float(won[closed].mean()) if closed.any() else float("nan"),
        first_date=calendar.origin,
        last_date=calendar.origin + np.timedelta64(calendar.last_day, "D"),
        seconds=time.perf_counter() - started,
    )


# --- Drawing the latent world ----------------------------------------------------------------------


def _draw_accounts(rng: np.random.Generator, n: int, calendar: _Calendar) -> _Accounts:
    ids = _numbered_ids("ACC-", n, digits=6)
    industry = rng.choice(len(INDUSTRY_NAMES), size=n, p=INDUSTRY_SHARES)
    country = rng.choice(len(COUNTRY_NAMES), size=n, p=COUNTRY_SHARES / COUNTRY_SHARES.sum())
    # Head-count and revenue are lognormal and tied together through revenue per employee.
    log_employees = np.log(MEDIAN_EMPLOYEES) + LOG_EMPLOYEES_SD * rng.standard_normal(n)
    employees = np.clip(np.round(np.exp(log_employees)), 1, 500_000)
    log_revenue_per_employee = np.log(MEDIAN_REVENUE_PER_EMPLOYEE) + INDUSTRY_REVENUE_PER_EMPLOYEE[industry]
    revenue_per_employee = np.exp(log_revenue_per_employee + 0.5 * rng.standard_normal(n))
    revenue = np.maximum(np.round(employees * revenue_per_employee, -3), 10_000)
    adoption = np.array(list(TECH_TOOLS.values()))
    adoption_logit = (
        np.log(adoption / (1 - adoption))[None, :] + 0.3 * (np.log(employees) - np.log(MEDIAN_EMPLOYEES))[:, None]
    )
    tech = rng.random((n, len(TECH_NAMES))) < 1 / (1 + np.exp(-adoption_logit))
    surging = rng.random(n) < SURGE_SHARE
    surge_day = np.where(
        surging, rng.integers(calendar.first_created_day, calendar.last_day - SURGE_DAYS + 2, size=n), -1
    )
    return _Accounts(
        ids=ids,
        industry=industry,
        country=country,
        employees=employees,
        revenue=revenue,
        tech=tech,
        propensity=rng.standard_normal(n),
        surge_day=surge_day,
    )


def _draw_families(rng: np.random.Generator, accounts: _Accounts) -> None:
    """Families as runs of consecutive accounts inside each generation chunk (so a chunk sees whole families)."""
    n = len(accounts)
    top = np.arange(n)
    parent = np.full(n, -1)
    for start in range(0, n, ACCOUNTS_PER_CHUNK):
        stop = min(start + ACCOUNTS_PER_CHUNK, n)
        sizes = rng.choice(FAMILY_SIZES, size=stop - start, p=FAMILY_SIZE_SHARES)
        firsts = start + np.concatenate(([0], np.cumsum(sizes)))
        firsts = firsts[firsts < stop]
        size = np.diff(np.append(firsts, stop))
        family_top = np.repeat(firsts, size)
        rank = np.arange(start, stop) - family_top
        top[start:stop] = family_top
        parent[start:stop] = np.where(rank == 0, -1, np.where(rank >= 3, family_top + 1, family_top))
    accounts.family_top, accounts.family_parent = top, parent


def _spread_over_family(rng: np.random.Generator, accounts: _Accounts, chunk: _Chunk, owner: np.ndarray) -> np.ndarray:
    """With families: each of the `owner` accounts (within the chunk) replaced by another entity of its family, drawn
    at random (a family of one keeps its own): the buying group's activity shows up across the family."""
    if accounts.family_top is None:
        return owner
    top = accounts.family_top[chunk.accounts] - chunk.start
    size = np.bincount(top, minlength=chunk.size)[top[owner]]
    rank = owner - top[owner]
    step = 1 + (rng.random(owner.size) * np.maximum(size - 1, 1)).astype(np.int64)
    return top[owner] + np.where(size > 1, (rank + step) % np.maximum(size, 1), 0)


def _family_points(
    accounts: _Accounts, chunk: _Chunk, local: np.ndarray, second: np.ndarray, weight: np.ndarray
) -> np.ndarray:
    """Each of the chunk's opportunities' decayed points before creation: its account's own, or with families its
    whole family's (the events keyed by their family's top account)."""
    if accounts.family_top is None:
        return _decayed_window_sums(local, second, weight, chunk.owner, chunk.created_second)
    top = accounts.family_top[chunk.accounts] - chunk.start
    order = np.lexsort((second, top[local]))
    return _decayed_window_sums(top[local][order], second[order], weight[order], top[chunk.owner], chunk.created_second)


def _draw_opportunities(
    rng: np.random.Generator,
    accounts: _Accounts,
    calendar: _Calendar,
    planted: tuple[_PilotPlan, np.random.Generator] | None = None,
) -> _Opportunities:
    n = len(accounts)
    size_score = (np.log(accounts.employees) - np.log(MEDIAN_EMPLOYEES)) / LOG_EMPLOYEES_SD
    mean_count = OPPORTUNITIES_PER_ACCOUNT * np.exp(
        0.4 * accounts.propensity + 0.15 * size_score - (0.4**2 + 0.15**2) / 2
    )
    mixing = rng.gamma(OPPORTUNITY_COUNT_SHAPE, 1 / OPPORTUNITY_COUNT_SHAPE, size=n)
    account = np.repeat(np.arange(n), rng.poisson(mean_count * mixing))
    created = rng.integers(calendar.first_created_day, calendar.last_day + 1, size=account.size)
    # Research surges often turn into an opportunity a few weeks later.
    follows_surge = (accounts.surge_day >= 0) & (rng.random(n) < SURGE_FOLLOW_UP_SHARE)
    follow_up_created = accounts.surge_day + rng.integers(7, 29, size=n)
    follows_surge &= follow_up_created <= calendar.last_day
    account = np.concatenate([account, np.flatnonzero(follows_surge)])
    created = np.concatenate([created, follow_up_created[follows_surge]])

    creation_days = calendar.last_day + 1 - calendar.first_created_day
    creation_rate = mean_count * mixing / creation_days
    follow_up_day = np.where(follows_surge, follow_up_created, -1)
    cycle, heat, product, log_amount = _opportunity_details(rng, accounts, account)
    if planted is not None:  # treated accounts open `lift` times more opportunities from the start on
        plan, pilot_rng = planted
        days = calendar.last_day + 1 - plan.start_day
        extra = pilot_rng.poisson(plan.pilot.lift * creation_rate * days * plan.treated)
        plan.extra_opportunities[:] = extra
        extra_account = np.repeat(np.arange(n), extra)
        # Drawn from the pilot's own stream: every other opportunity is the one the export without a pilot holds.
        details = _opportunity_details(pilot_rng, accounts, extra_account)
        account = np.concatenate([account, extra_account])
        created = np.concatenate([created, pilot_rng.integers(plan.start_day, calendar.last_day + 1, size=extra.sum())])
        cycle, heat, product, log_amount = (
            np.concatenate([mine, theirs]) for mine, theirs in zip((cycle, heat, product, log_amount), details)
        )
    # CRMs number opportunities as they are created.
    order = np.lexsort((account, created))
    return _Opportunities(
        account=account[order],
        created_day=created[order],
        close_day=(created + cycle.astype(np.int64))[order],
        product=product[order],
        heat=heat[order],
        amount=np.round(np.exp(log_amount))[order],
        last_day=calendar.last_day,
        creation_rate=creation_rate,
        follow_up_day=follow_up_day,
    )


def _opportunity_details(rng: np.random.Generator, accounts: _Accounts, account: np.ndarray):
    """Sales cycle (days), heat, product and log amount of opportunities with these accounts."""
    m = account.size
    cycle = np.clip(
        np.round(MIN_SALES_CYCLE_DAYS + rng.gamma(2.0, 28.0, size=m)), MIN_SALES_CYCLE_DAYS, MAX_SALES_CYCLE_DAYS
    )
    heat = np.exp(0.5 * accounts.propensity[account] + 0.8 * rng.standard_normal(m) - (0.5**2 + 0.8**2) / 2)
    mix = np.cumsum(PRODUCT_MIX[accounts.size_band()[account]], axis=1)
    product = np.minimum((rng.random(m)[:, None] > mix).sum(axis=1), len(PRODUCTS) - 1)
    log_amount = accounts.log_deal_size_base()[account] + PRODUCT_PRICE_EFFECT[product]
    log_amount += DEAL_NOISE_SIGMA * rng.standard_normal(m)
    return cycle, heat, product, log_amount


# --- A planted pilot ---------------------------------------------------------------------------------


@dataclass
class _PilotPlan:
    pilot: PlantedPilot
    start_day: int
    assignment: Any  # pandas DataFrame: account_id, group, stratum, score_band
    treated: np.ndarray  # per account (all accounts; False outside the pilot)
    extra_opportunities: np.ndarray  # per account, filled when opportunities are drawn


def _plan_pilot(pilot: PlantedPilot, accounts: _Accounts, calendar: _Calendar) -> _PilotPlan:
    """The split, made as `tiering pilot design` makes it: every account, its tier standing in for the one a scoring
    would give (its size band: large accounts in Tier 1, mid-size in Tier 2, small in Tier 3)."""
    import pandas as pd

    from pilot.design import TREATMENT, design_pilot

    start = np.datetime64(pilot.start, "D")
    start_day = int((start - calendar.origin).astype(np.int64))
    if start_day - pilot.horizon_days < calendar.first_created_day:
        raise PilotOutsideHistory(
            f"pilot start {pilot.start} leaves no {pilot.horizon_days}-day pre-period inside the history: start later"
        )
    if start_day + pilot.horizon_days > calendar.last_day + 1:
        last = calendar.origin + np.timedelta64(calendar.last_day, "D")
        raise PilotOutsideHistory(
            f"pilot start {pilot.start}: its {pilot.horizon_days} days end after the export's last day ({last}): "
            "start earlier"
        )
    band = accounts.size_band()
    tier = np.where(band >= 2, "tier_1", np.where(band == 1, "tier_2", "tier_3"))
    ids = np.asarray(accounts.ids.to_pylist(), dtype=object)
    scores = pd.DataFrame({"account_id": ids, "tier": tier, "learned_score": accounts.log_deal_size_base()})
    made = design_pilot(scores, ["tier_1", "tier_2", "tier_3"], seed=pilot.seed)
    treated = np.isin(ids, made.assignment.loc[made.assignment["group"] == TREATMENT, "account_id"].to_numpy())
    return _PilotPlan(pilot, start_day, made.assignment, treated, np.zeros(len(accounts), dtype=np.int64))


def _write_pilot(
    staged: _StagedFiles, plan: _PilotPlan, accounts: _Accounts, opportunities: _Opportunities, table: pa.Table
) -> None:
    """assignment.csv and pilot.json as a design writes them (its power from the generated history), and the truth."""
    import pandas as pd

    from pilot.document import ASSIGNMENT_FILE, PILOT_FILE, pilot_document, pilot_json
    from pilot.metrics import Metric, account_activity
    from pilot.readout import design_power

    pilot = plan.pilot
    start = pd.Timestamp(pilot.start)
    horizon = pd.Timedelta(days=pilot.horizon_days)
    frame = table.select(["account_id", "created_date", "close_date", "outcome", "amount"]).to_pandas()
    for column in ("created_date", "close_date"):
        frame[column] = pd.to_datetime(frame[column])
    ids = plan.assignment["account_id"]
    history = account_activity(frame, ids, start - horizon, start)
    earlier = account_activity(frame, ids, start - 2 * horizon, start - horizon)
    power = design_power(plan.assignment, Metric.PIPELINE, history, earlier)
    document = pilot_document(
        plan.assignment,
        seed=pilot.seed,
        start=start.date(),
        horizon_days=pilot.horizon_days,
        metric=Metric.PIPELINE,
        tiers=["tier_1", "tier_2", "tier_3"],
        strata=[],
        draw=0,
        generated=True,
        power={
            "baseline": power.baseline,
            "detectable_difference": power.detectable_difference,
            "detectable_lift": power.detectable_lift,
            "with_cuped": power.with_cuped,
        },
    )
    staged.path(ASSIGNMENT_FILE).write_text(plan.assignment.to_csv(index=False), encoding="utf-8")
    staged.path(PILOT_FILE).write_text(pilot_json(document), encoding="utf-8")
    position = pd.Series(np.arange(len(accounts)), index=accounts.ids.to_pylist())
    truth = plan.assignment[["account_id", "group"]].assign(
        planted_lift=np.where(plan.assignment["group"] == "treatment", pilot.lift, 0.0),
        extra_opportunities=plan.extra_opportunities[position.reindex(ids).to_numpy()],
    )
    staged.path(PILOT_TRUTH_FILE).write_text(truth.to_csv(index=False), encoding="utf-8")


# --- Engagement and intent, chunk by chunk -----------------------------------------------------------


class _Chunk:
    """A block of accounts [start, stop) generated together, with their opportunities (`members`)."""

    def __init__(self, start: int, stop: int, members: np.ndarray, opportunities: _Opportunities):
        self.size = stop - start
        self.start = start
        self.accounts = slice(start, stop)
        self.owner = opportunities.account[members] - start  # account numbers within the chunk
        self.created_day = opportunities.created_day[members]
        self.created_second = self.created_day * SECONDS_PER_DAY
        self.close_day = opportunities.close_day[members]
        self.heat = opportunities.heat[members]


def _write_activity(
    staged: _StagedFiles,
    accounts: _Accounts,
    opportunities: _Opportunities,
    calendar: _Calendar,
    file_format: str,
    seed: np.random.SeedSequence,
    shift: tuple[int, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Generate and write engagement and intent; return each opportunity's pre-creation points."""
    engagement_points = np.zeros(len(opportunities))
    intent_points = np.zeros(len(opportunities))
    rows = {"engagement": 0, "intent": 0}
    by_account = np.argsort(opportunities.account, kind="stable")
    sorted_accounts = opportunities.account[by_account]
    starts = range(0, len(accounts), ACCOUNTS_PER_CHUNK)
    writers = {
        "engagement": _open_writer(staged.table_path("engagement", file_format), ENGAGEMENT_SCHEMA, file_format),
        "intent": _open_writer(staged.table_path("intent", file_format), INTENT_SCHEMA, file_format),
    }
    try:
        for start, chunk_seed in zip(starts, seed.spawn(len(starts))):
            stop = min(start + ACCOUNTS_PER_CHUNK, len(accounts))
            members = by_account[np.searchsorted(sorted_accounts, start) : np.searchsorted(sorted_accounts, stop)]
            chunk = _Chunk(start, stop, members, opportunities)
            rng = np.random.default_rng(chunk_seed)
            chunk_ids = accounts.ids[chunk.accounts]

            local, second, channel, count = _draw_engagement(rng, accounts, chunk, calendar, shift)
            weight = TRUTH_WEIGHT_BY_CHANNEL[channel] * count
            engagement_points[members] = _family_points(accounts, chunk, local, second, weight)
            timestamps, channels = calendar.timestamps(second), CHANNEL_NAMES.take(channel)
            columns = [chunk_ids.take(local), timestamps, channels, pa.array(count, pa.int32())]
            writers["engagement"].write_table(pa.table(columns, schema=ENGAGEMENT_SCHEMA))
            rows["engagement"] += local.size

            local, day, topic, score = _draw_intent(rng, accounts, chunk, calendar)
            weight = score / 100
            intent_points[members] = _family_points(accounts, chunk, local, day * SECONDS_PER_DAY, weight)
            columns = [
                chunk_ids.take(local),
                calendar.dates(day),
                INTENT_TOPICS.take(topic),
                pa.array(score, pa.int32()),
            ]
            writers["intent"].write_table(pa.table(columns, schema=INTENT_SCHEMA))
            rows["intent"] += local.size
    finally:
        for writer in writers.values():
            writer.close()
    return engagement_points, intent_points, rows


def _draw_engagement(
    rng: np.random.Generator,
    accounts: _Accounts,
    chunk: _Chunk,
    calendar: _Calendar,
    shift: tuple[int, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The chunk's events sorted by account then time: (account within chunk, second, channel, count)."""
    parts = []

    # Background activity all through the history, more of it at high-propensity accounts.
    per_account = rng.poisson(BACKGROUND_EVENTS_PER_ACCOUNT * accounts.activity_rate[chunk.accounts])
    local = np.repeat(np.arange(chunk.size), per_account)
    second = rng.integers(0, calendar.end_of_history_second, size=local.size)
    parts.append((local, second, _draw_channels(rng, BACKGROUND_CHANNEL_MIX, local.size)))

    # Buying activity builds up in the weeks before an opportunity is created.
    per_opportunity = rng.poisson(PRE_OPPORTUNITY_EVENTS * chunk.heat)
    lead = rng.exponential(PRE_OPPORTUNITY_LEAD_DAYS * SECONDS_PER_DAY, size=per_opportunity.sum()).astype(np.int64)
    second = np.repeat(chunk.created_second, per_opportunity) - 1 - lead  # strictly before the created date
    owner = _spread_over_family(rng, accounts, chunk, np.repeat(chunk.owner, per_opportunity))
    parts.append((owner, second, _draw_channels(rng, PRE_OPPORTUNITY_CHANNEL_MIX, second.size)))

    # Meetings and emails with the buying group while a deal is open.
    deal_end_second = np.minimum(chunk.close_day * SECONDS_PER_DAY, calendar.end_of_history_second)
    duration = deal_end_second - chunk.created_second
    per_opportunity = rng.poisson(OPEN_DEAL_EVENTS_PER_30_DAYS * duration / (30 * SECONDS_PER_DAY))
    offset = (rng.random(per_opportunity.sum()) * np.repeat(duration, per_opportunity)).astype(np.int64)
    second = np.repeat(chunk.created_second, per_opportunity) + offset
    parts.append(
        (np.repeat(chunk.owner, per_opportunity), second, _draw_channels(rng, OPEN_DEAL_CHANNEL_MIX, second.size))
    )

    # Research surges: a two-week burst on several channels at once.
    surge_day = accounts.surge_day[chunk.accounts]
    surging = np.flatnonzero(surge_day >= 0)
    channels = SURGE_CHANNELS[rng.random((surging.size, SURGE_CHANNELS.size)).argsort(axis=1)[:, :SURGE_CHANNEL_COUNT]]
    per_channel = rng.poisson(SURGE_EVENTS_PER_CHANNEL, size=channels.shape).ravel()
    local = np.repeat(np.repeat(surging, SURGE_CHANNEL_COUNT), per_channel)
    offset = rng.integers(0, SURGE_DAYS * SECONDS_PER_DAY, size=local.size)
    parts.append((local, surge_day[local] * SECONDS_PER_DAY + offset, np.repeat(channels.ravel(), per_channel)))

    local, second, channel = (np.concatenate(columns) for columns in zip(*parts))
    inside = (second >= 0) & (second < calendar.end_of_history_second)
    local, second, channel = local[inside], second[inside], channel[inside]
    if shift is not None:  # a planted population shift: from the shift on, each event comes `factor` times on average
        start, factor = shift
        after = np.flatnonzero(second >= start)
        copies = np.repeat(after, rng.poisson(max(factor - 1.0, 0.0), size=after.size))
        local, second, channel = (np.r_[column, column[copies]] for column in (local, second, channel))
    order = np.argsort(local * calendar.end_of_history_second + second, kind="stable")
    local, second, channel = local[order], second[order], channel[order]
    # Most events count once; a web visit may be several page views, an email opened again.
    count = np.where(np.isin(channel, MULTI_COUNT_CHANNELS), rng.geometric(0.8, size=channel.size), 1)
    return local, second, channel, count


def _draw_intent(
    rng: np.random.Generator, accounts: _Accounts, chunk: _Chunk, calendar: _Calendar
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The chunk's intent rows sorted by account then date: (account within chunk, day, topic, score 0-100)."""
    parts = []

    per_account = rng.poisson(BACKGROUND_INTENT_ROWS * np.sqrt(accounts.activity_rate[chunk.accounts]))
    local = np.repeat(np.arange(chunk.size), per_account)
    day = rng.integers(0, calendar.last_day + 1, size=local.size)
    parts.append((local, day, _draw_topics(rng, local.size), rng.beta(2, 5, size=local.size)))

    # Third-party research on the topics rises before a deal, with higher scores.
    per_opportunity = rng.poisson(PRE_OPPORTUNITY_INTENT_ROWS * chunk.heat)
    lead = np.floor(rng.exponential(PRE_OPPORTUNITY_INTENT_LEAD_DAYS, size=per_opportunity.sum())).astype(np.int64)
    day = np.repeat(chunk.created_day, per_opportunity) - 1 - lead
    owner = _spread_over_family(rng, accounts, chunk, np.repeat(chunk.owner, per_opportunity))
    parts.append((owner, day, _draw_topics(rng, day.size), rng.beta(5, 2, size=day.size)))

    surge_day = accounts.surge_day[chunk.accounts]
    surging = np.flatnonzero(surge_day >= 0)
    topics = rng.random((surging.size, len(INTENT_TOPICS))).argsort(axis=1)[:, :SURGE_TOPIC_COUNT]
    per_topic = rng.poisson(SURGE_INTENT_ROWS_PER_TOPIC, size=topics.shape).ravel()
    local = np.repeat(np.repeat(surging, SURGE_TOPIC_COUNT), per_topic)
    day = surge_day[local] + rng.integers(0, SURGE_DAYS, size=local.size)
    parts.append((local, day, np.repeat(topics.ravel(), per_topic), rng.beta(6, 2, size=local.size)))

    local, day, topic, score = (np.concatenate(columns) for columns in zip(*parts))
    inside = (day >= 0) & (day <= calendar.last_day)
    local, day, topic, score = local[inside], day[inside], topic[inside], score[inside]
    order = np.argsort(local * (calendar.last_day + 1) + day, kind="stable")
    return local[order], day[order], topic[order], np.round(100 * score[order]).astype(np.int64)


def _draw_channels(rng: np.random.Generator, mix: np.ndarray, size: int) -> np.ndarray:
    return rng.choice(len(CHANNELS), size=size, p=mix)


def _draw_topics(rng: np.random.Generator, size: int) -> np.ndarray:
    return rng.choice(len(INTENT_TOPICS), size=size, p=INTENT_TOPIC_MIX)


def _decayed_window_sums(
    event_key: np.ndarray,
    event_second: np.ndarray,
    event_weight: np.ndarray,
    query_key: np.ndarray,
    query_second: np.ndarray,
) -> np.ndarray:
    """For each query: sum of weight * 0.5 ** (age_days / HALF_LIFE_DAYS) over the events with its key
    and query_second - LOOKBACK_DAYS <= event_second < query_second. Events are sorted by (key, second).

    The decay splits as 2 ** (event / half-life) * 2 ** (-query / half-life), so one cumulative sum
    answers every query. Exponents are taken from the start of the query's look-back-long epoch: only
    events of that epoch and the one before enter, and no term exceeds 2 ** (180 / 30) = 64, which
    keeps the differences of cumulative sums exact to floating-point precision.
    """
    window = LOOKBACK_DAYS * SECONDS_PER_DAY
    half_life = HALF_LIFE_DAYS * SECONDS_PER_DAY
    span = int(max(event_second.max(initial=0), query_second.max(initial=0))) + 1
    event_position = event_key.astype(np.int64) * span + event_second
    query_base = query_key.astype(np.int64) * span
    window_end = np.searchsorted(event_position, query_base + query_second, side="left")
    window_start = np.searchsorted(event_position, query_base + np.maximum(query_second - window, 0), side="left")

    event_epoch = event_second // window
    query_epoch = query_second // window
    sums = np.zeros(query_key.size)
    for epoch in np.unique(query_epoch):
        anchor = epoch * window
        nearby = (event_epoch == epoch) | (event_epoch == epoch - 1)
        scaled = np.where(nearby, event_weight * np.exp2((event_second - anchor) / half_life), 0.0)
        cumulative = np.concatenate(([0.0], np.cumsum(scaled)))
        queries = query_epoch == epoch
        in_window = cumulative[window_end[queries]] - cumulative[window_start[queries]]
        sums[queries] = in_window * np.exp2((anchor - query_second[queries]) / half_life)
    return sums


# --- Outcomes: each bucket of creation dates sees the outcomes of the buckets before it ---------


def _draw_outcomes(
    rng: np.random.Generator,
    accounts: _Accounts,
    opportunities: _Opportunities,
    engagement_points: np.ndarray,
    intent_points: np.ndarray,
    calendar: _Calendar,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (won, true win probability: NaN for open opportunities).

    An opportunity's probability depends on the account's opportunities closed before it was
    created. Those were created at least MIN_SALES_CYCLE_DAYS earlier, so in buckets of that many
    creation days every dependency lies in an earlier bucket: the loop runs over about 37 buckets,
    vectorised within each.
    """
    n = len(opportunities)
    closed = ~opportunities.is_open
    uniform = rng.random(n)
    fit = {name: values[opportunities.account] for name, values in accounts.fit_terms().items()}

    # Opportunities in (account, close day) order: a cumulative sum counts each account's earlier closes.
    key_span = calendar.last_day + 2
    close_position = opportunities.account * key_span + np.where(closed, opportunities.close_day, calendar.last_day + 1)
    by_close = np.argsort(close_position, kind="stable")
    close_rank = np.empty(n, dtype=np.int64)
    close_rank[by_close] = np.arange(n)
    sorted_close_position = close_position[by_close]
    history_start = np.searchsorted(sorted_close_position, opportunities.account * key_span, side="left")
    created_position = opportunities.account * key_span + opportunities.created_day
    history_end = np.searchsorted(sorted_close_position, created_position, side="left")  # closed strictly before

    won_by_close = np.zeros(n, dtype=np.int64)
    lost_by_close = np.zeros(n, dtype=np.int64)
    won = np.zeros(n, dtype=bool)
    probability = np.full(n, np.nan)
    bucket = (opportunities.created_day - calendar.first_created_day) // MIN_SALES_CYCLE_DAYS
    for members in np.split(np.argsort(bucket, kind="stable"), np.cumsum(np.bincount(bucket))[:-1]):
        members = members[closed[members]]
        won_before = np.concatenate(([0], np.cumsum(won_by_close)))
        lost_before = np.concatenate(([0], np.cumsum(lost_by_close)))
        probability[members] = WIN_MODEL.probability(
            **{name: values[members] for name, values in fit.items()},
            engagement_points=engagement_points[members],
            intent_points=intent_points[members],
            prior_won=won_before[history_end[members]] - won_before[history_start[members]],
            prior_lost=lost_before[history_end[members]] - lost_before[history_start[members]],
        )
        won[members] = uniform[members] < probability[members]
        won_by_close[close_rank[members]] = won[members]
        lost_by_close[close_rank[members]] = ~won[members]
    return won, probability


# --- The export as a CRM would give it ------------------------------------------------------------


def _accounts_table(rng: np.random.Generator, accounts: _Accounts) -> pa.Table:
    n = len(accounts)
    names = pc.binary_join_element_wise(
        NAME_PREFIXES[rng.integers(0, NAME_PREFIXES.size, size=n)],
        NAME_NOUNS[accounts.industry, rng.integers(0, NAME_NOUNS.shape[1], size=n)],
        LEGAL_SUFFIXES[accounts.region, rng.integers(0, LEGAL_SUFFIXES.shape[1], size=n)],
        " ",
    )
    tools = np.nonzero(accounts.tech)
    tool_lists = pa.ListArray.from_arrays(np.searchsorted(tools[0], np.arange(n + 1)), pa.array(TECH_NAMES[tools[1]]))
    tech_stack = pc.binary_join(tool_lists, ";").to_numpy(zero_copy_only=False).astype(str)
    no_tools = ~accounts.tech.any(axis=1)
    # A few subsidiaries point at a larger account.
    large = np.flatnonzero(accounts.employees >= 1_000)
    parent = np.full(n, -1)
    if large.size:  # drawn with or without families, so the draws after it are the same
        parent = np.where(rng.random(n) < PARENT_SHARE, large[rng.integers(0, large.size, size=n)], -1)
        parent = resolve_links(parent).parent  # no self-parent, cycle or over-deep chain: the export is valid
    if accounts.family_parent is not None:
        parent = accounts.family_parent
    # A sales-ops custom field: the rep's segment call, mostly following head-count.
    segment = np.array(["SMB", "Mid-Market", "Enterprise"])[
        np.searchsorted([500, 5_000], accounts.employees, side="right")
    ]
    segment = np.where((accounts.employees >= 10_000) & (rng.random(n) < 0.5), "Strategic", segment)
    segment = np.where(rng.random(n) < 0.1, rng.choice(["SMB", "Mid-Market", "Enterprise"], size=n), segment)

    def missing(rate: float) -> np.ndarray:
        return rng.random(n) < rate

    table = {
        "account_id": accounts.ids,
        "account_name": names,
        "industry": pa.array(_hand_typed(rng, INDUSTRY_NAMES[accounts.industry], 0.04), mask=missing(0.03)),
        "employees": pa.array(accounts.employees.astype(np.int64), mask=missing(0.04)),
        "annual_revenue": pa.array(accounts.revenue.astype(np.int64), mask=missing(0.08)),
        "country": pa.array(_hand_typed(rng, COUNTRY_NAMES[accounts.country], 0.03), mask=missing(0.04)),
        "region": pa.array(_hand_typed(rng, REGION_NAMES[accounts.region], 0.02), mask=missing(0.03)),
        "tech_stack": pa.array(_hand_typed(rng, tech_stack, 0.02), mask=missing(0.08) | no_tools),
        "parent_account_id": accounts.ids.take(pa.array(parent, mask=parent < 0)),
        "segment_hint": pa.array(segment, mask=missing(0.15)),
    }
    # Account owners, drawn after every other column so those stay as earlier versions wrote them: one rep per
    # region and segment mostly, a few accounts reassigned, a few unowned.
    reps = OWNER_NAMES[
        (accounts.region * 3 + np.searchsorted([500, 5_000], accounts.employees, side="right")) % OWNER_NAMES.size
    ]
    reps = np.where(rng.random(n) < 0.1, OWNER_NAMES[rng.integers(0, OWNER_NAMES.size, size=n)], reps)
    table["owner"] = pa.array(reps, mask=missing(0.05))
    return pa.table(table)


def _numbered_ids(prefix: str, count: int, digits: int) -> pa.Array:
    """CRM-style ids numbered from 1: `ACC-000001` (more digits once they run out)."""
    if count == 0:
        return pa.array([], pa.string())
    return pa.array(np.strings.add(prefix, np.strings.zfill(np.arange(1, count + 1).astype(str), digits)))


def _hand_typed(rng: np.random.Generator, values: np.ndarray, rate: float) -> np.ndarray:
    """Values typed by hand: a few come in another case or with stray spaces (`" software"`, `"FINANCIAL SERVICES"`)."""
    lower = np.strings.lower(values)
    other_case = np.where(values == lower, np.strings.title(values), lower)
    style = rng.choice(5, size=values.size, p=[1 - rate] + [rate / 4] * 4)
    return np.select(
        [style == 1, style == 2, style == 3, style == 4],
        [np.strings.upper(values), other_case, np.strings.add(" ", values), np.strings.add(values, "  ")],
        default=values,
    )


def _opportunities_table(
    accounts: _Accounts, opportunities: _Opportunities, won: np.ndarray, calendar: _Calendar
) -> pa.Table:
    is_open = opportunities.is_open
    return pa.table(
        {
            "opportunity_id": _numbered_ids("OPP-", len(opportunities), digits=7),
            "account_id": accounts.ids.take(opportunities.account),
            "created_date": calendar.dates(opportunities.created_day),
            "close_date": calendar.dates(opportunities.close_day, missing=is_open),
            "outcome": np.where(is_open, "open", np.where(won, "won", "lost")),
            "amount": opportunities.amount,
            "product": PRODUCTS[opportunities.product],
        }
    )


def _truth_table(
    accounts: _Accounts, opportunities: _Opportunities, opportunity_ids: pa.Array, win_probability: np.ndarray
) -> pa.Table:
    deal_size = np.round(accounts.expected_deal_size(), 2)
    without_opportunities = np.flatnonzero(np.bincount(opportunities.account, minlength=len(accounts)) == 0)
    no_opportunity_ids = pa.nulls(without_opportunities.size, pa.string())
    return pa.table(
        {
            "opportunity_id": pa.concat_arrays([opportunity_ids, no_opportunity_ids]),
            "account_id": pa.concat_arrays(
                [accounts.ids.take(opportunities.account), accounts.ids.take(without_opportunities)]
            ),
            "true_win_probability": pa.concat_arrays(
                [
                    pa.array(np.round(win_probability, 6), from_pandas=True),
                    pa.nulls(without_opportunities.size, pa.float64()),
                ]
            ),
            "true_expected_deal_size": np.concatenate(
                [deal_size[opportunities.account], deal_size[without_opportunities]]
            ),
        }
    )


def _creation_truth_table(accounts: _Accounts, opportunities: _Opportunities, calendar: _Calendar) -> pa.Table:
    """Each account's true opportunity creation: background creations arrive as a Poisson process at
    `true_creation_rate_per_day` (constant between `creation_start` and the end date; it rises with the
    account's latent propensity, which also drives its engagement, and with its size), and a research surge
    may add one creation on `follow_up_created_date`. So P(at least one creation in [T, T + h)) is
    1 - exp(-rate * days of [T, T + h) inside the creation period), or 1 when the follow-up falls inside."""
    follow_up = opportunities.follow_up_day
    return pa.table(
        {
            "account_id": accounts.ids,
            "true_creation_rate_per_day": np.round(opportunities.creation_rate, 9),
            "follow_up_created_date": calendar.dates(np.maximum(follow_up, 0), missing=follow_up < 0),
            "creation_start": calendar.dates(np.full(len(accounts), calendar.first_created_day)),
        }
    )


# --- Files -----------------------------------------------------------------------------------------


class _StagedFiles:
    """Files written under temporary names in the target folder (`atomic_path`) and renamed into place together at
    the end, so a failed run leaves no half-written (or half-updated) export behind."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._files = contextlib.ExitStack()
        self._superseded: list[Path] = []

    def path(self, name: str, supersedes: tuple[str, ...] = ()) -> Path:
        """A temporary path for `name`; on success the files named in `supersedes` are removed."""
        self._superseded.extend(self.folder / other for other in supersedes)
        return self._files.enter_context(atomic_path(self.folder / name))

    def table_path(self, table: str, file_format: str) -> Path:
        """Where a canonical table goes; the same table in another format goes, as a loader needs one."""
        others = tuple(f"{table}.{other}" for other in FileFormat if other != file_format)
        return self.path(f"{table}.{file_format}", supersedes=others)

    def __enter__(self) -> _StagedFiles:
        self._files.__enter__()
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self._files.__exit__(exc_type, exc, traceback)  # each file renamed into place, or its temporary removed
        if exc_type is None:
            for stale in self._superseded:
                stale.unlink(missing_ok=True)


def _open_writer(path: Path, schema: pa.Schema, file_format: str):
    if file_format == "parquet":
        return pq.ParquetWriter(path, schema)
    return pa_csv.CSVWriter(path, schema)


def _write_table(table: pa.Table, path: Path, file_format: str) -> None:
    if file_format == "parquet":
        pq.write_table(table, path)
    else:
        pa_csv.write_csv(table, path)
