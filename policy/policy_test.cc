#include "policy/policy.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace passerelle::policy {
namespace {

namespace v1 = ::passerelle::v1;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAlice[] = "spiffe://passerelle/user/alice";
constexpr char kBob[] = "spiffe://passerelle/user/bob";
constexpr char kCarol[] = "spiffe://passerelle/user/carol";
constexpr char kDora[] = "spiffe://passerelle/user/dora";
constexpr char kGateway[] = "spiffe://passerelle/gateway";

constexpr char kFederation[] = R"txt(
federation {
  id: "demo"
  gateway_identity: "spiffe://passerelle/gateway"
  site { id: "fr" }
  site { id: "qc" }
  member { identity: "spiffe://passerelle/user/dora" role: AUDITOR }
  disclosure { min_cell_size: 10 mechanism: LAPLACE epsilon_per_query: 0.5 rounding: 1 }
  allow {
    domains: ["condition", "drug", "measurement", "observation"]
    vocabularies: ["icd10", "atc", "loinc", "snomed"]
    criteria: ["sex", "age", "event", "not", "sequence", "window"]
    dimensions: ["sex", "age_band", "site"]
    min_age_band_width: 5
    max_breakdown_cells: 100
  }
}
project {
  id: "diabetes-fr-qc"
  purposes: ["DUO:0000006"]
  valid_from: "2026-01-01"
  valid_until: "2026-12-31"
  sites: ["fr", "qc"]
  member { identity: "spiffe://passerelle/user/alice" role: RESEARCHER }
  member { identity: "spiffe://passerelle/user/bob" role: AUDITOR }
  member { identity: "spiffe://passerelle/user/carol" role: STEWARD }
  allow { dimensions: ["sex", "age_band"] max_breakdown_cells: 24 }
  budget { epsilon_cap: 10 researcher_epsilon_cap: 4 reset_period_days: 30 }
}
project {
  id: "two-purposes"
  purposes: ["DUO:0000006", "DUO:0000007"]
  valid_until: "2030-01-01"
  sites: ["fr"]
  member { identity: "spiffe://passerelle/user/alice" role: RESEARCHER }
  budget { epsilon_cap: 3 }
}
forbid { id: "floor" description: "no cell below 5, ever" min_cell_size_below: 5 }
forbid {
  id: "no-two-purposes-on-qc"
  description: "not on Quebec"
  projects: ["two-purposes"]
  sites: ["qc"]
}
)txt";

constexpr char kSiteFr[] = R"txt(
site {
  id: "fr"
  callers: ["spiffe://passerelle/gateway"]
  disclosure { min_cell_size: 11 rounding: 5 }
  allow { vocabularies: ["icd10", "atc"] min_age_band_width: 10 }
  forbid { id: "fr-no-drug-sequences" domains: ["drug"] criteria: ["sequence"] }
}
)txt";

constexpr char kSiteQc[] = R"txt(
site {
  id: "qc"
  callers: ["spiffe://passerelle/gateway"]
  projects: ["diabetes-fr-qc"]
  disclosure { min_cell_size: 5 epsilon_per_query: 0.25 }
  forbid { id: "qc-no-site" dimensions: ["site"] }
}
)txt";

std::shared_ptr<const Policy> Load(const std::string& federation = kFederation,
                                   const std::string& fr = kSiteFr,
                                   const std::string& qc = kSiteQc) {
  auto p = Policy::LoadFromSources({{"federation.textproto", federation},
                                    {"site-fr.textproto", fr},
                                    {"site-qc.textproto", qc}});
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : nullptr;
}

v1::Query Q(const std::string& text) {
  v1::Query q;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &q)) << text;
  return q;
}

// condition icd10:E11* [group by ...]
v1::Query Diabetes(const std::string& group_by = "") {
  return Q(R"txt(where {
                  criterion {
                    event {
                      event {
                        domain: DOMAIN_CONDITION
                        codes { vocabulary: "icd10" code: "E11" prefix: true }
                      }
                    }
                  }
                })txt" +
           group_by);
}

absl::Time Day(int y, int m, int d) {
  return absl::FromCivil(absl::CivilDay(y, m, d), absl::UTCTimeZone());
}

AccessRequest Req(const v1::Query* q, const std::string& identity = kAlice,
                  const std::string& project = "diabetes-fr-qc") {
  AccessRequest r;
  r.identity = identity;
  r.project = project;
  r.purpose = "DUO:0000006";
  r.query = q;
  r.now = Day(2026, 6, 1);
  return r;
}

std::string Reasons(const v1::Decision& d) {
  return absl::StrJoin(d.reasons(), "\n");
}

TEST(DecideTest, AllowsAResearcherWithTheStrictestObligations) {
  auto p = Load();
  v1::Query q = Diabetes("group_by { kind: SEX }");
  v1::Decision d = p->Decide(Req(&q));
  ASSERT_TRUE(d.allow()) << Reasons(d);
  EXPECT_EQ(d.policy_version(), p->version());
  EXPECT_THAT(d.reasons(), Contains(HasSubstr("is a researcher of project "
                                              "diabetes-fr-qc (federation."
                                              "textproto:18)")));
  const v1::Obligations& ob = d.obligations();
  ASSERT_EQ(ob.sites_size(), 2);
  EXPECT_EQ(ob.sites(0).site(), "fr");
  EXPECT_EQ(ob.sites(0).min_cell_size(), 11);  // The site is stricter.
  EXPECT_EQ(ob.sites(1).site(), "qc");
  EXPECT_EQ(ob.sites(1).min_cell_size(), 10);  // The federation is stricter.
  EXPECT_EQ(ob.federation_min_cell_size(), 10);
  EXPECT_EQ(ob.min_cell_size(), 11);
  EXPECT_EQ(ob.mechanism(), v1::Disclosure::LAPLACE);
  EXPECT_DOUBLE_EQ(ob.epsilon_per_query(), 0.25);  // Quebec's is smaller.
  EXPECT_EQ(ob.rounding(), 5);
  EXPECT_FALSE(ob.exact_mode());
  EXPECT_THAT(ob.allowed_dimensions(), ElementsAre("age_band", "sex"));
  EXPECT_EQ(ob.max_breakdown_cells(), 24);
  EXPECT_EQ(ob.breakdown_cells(), 4);
  EXPECT_DOUBLE_EQ(ob.budget().epsilon_cap(), 10);
  EXPECT_DOUBLE_EQ(ob.budget().researcher_epsilon_cap(), 4);
  EXPECT_EQ(ob.budget().reset_period_days(), 30);
  EXPECT_EQ(ob.role(), v1::Member::RESEARCHER);
  EXPECT_EQ(ob.purpose(), "DUO:0000006");
  EXPECT_EQ(ob.project(), "diabetes-fr-qc");
}

TEST(DecideTest, OneSiteOnlyUsesThatSitesValues) {
  auto p = Load();
  v1::Query q = Diabetes();
  AccessRequest r = Req(&q);
  r.sites = {"qc"};
  v1::Decision d = p->Decide(r);
  ASSERT_TRUE(d.allow()) << Reasons(d);
  ASSERT_EQ(d.obligations().sites_size(), 1);
  EXPECT_EQ(d.obligations().min_cell_size(), 10);
  EXPECT_EQ(d.obligations().rounding(), 1);
}

TEST(DecideTest, DeniesUnknownIdentityNonMemberAndAuditor) {
  auto p = Load();
  v1::Query q = Diabetes();
  v1::Decision d = p->Decide(Req(&q, "spiffe://passerelle/user/mallory"));
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(d.reasons(0), HasSubstr("unknown identity"));

  d = p->Decide(Req(&q, kAlice, "nope"));
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(Reasons(d), HasSubstr("unknown project \"nope\""));

  d = p->Decide(Req(&q, kBob));
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(d.reasons(0), HasSubstr("only researchers may run queries"));
  EXPECT_EQ(d.obligations().role(), v1::Member::AUDITOR);

  d = p->Decide(Req(&q, kCarol));
  EXPECT_FALSE(d.allow());
  d = p->Decide(Req(&q, kDora));
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(Reasons(d), HasSubstr("is not a member of project"));

  d = p->Decide(Req(&q, ""));
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(Reasons(d), HasSubstr("no identity"));
}

TEST(DecideTest, ValidityDatesAreInclusiveInUtc) {
  auto p = Load();
  v1::Query q = Diabetes();
  AccessRequest r = Req(&q);
  r.now = Day(2026, 1, 1);
  EXPECT_TRUE(p->Decide(r).allow());
  r.now = Day(2026, 1, 1) - absl::Seconds(1);
  v1::Decision d = p->Decide(r);
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(d.reasons(0), HasSubstr("not valid before 2026-01-01"));
  r.now = Day(2027, 1, 1) - absl::Seconds(1);
  EXPECT_TRUE(p->Decide(r).allow());
  r.now = Day(2027, 1, 1);
  d = p->Decide(r);
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(d.reasons(0), HasSubstr("expired after 2026-12-31"));
}

TEST(DecideTest, Purposes) {
  auto p = Load();
  v1::Query q = Diabetes();
  AccessRequest r = Req(&q);
  r.purpose = "DUO:0000007";
  v1::Decision d = p->Decide(r);
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(d.reasons(0), HasSubstr("purpose DUO:0000007 is not approved"));
  // No declared purpose: the project's only one.
  r.purpose = "";
  d = p->Decide(r);
  EXPECT_TRUE(d.allow()) << Reasons(d);
  EXPECT_EQ(d.obligations().purpose(), "DUO:0000006");
  // With several purposes the request must say which.
  AccessRequest r2 = Req(&q, kAlice, "two-purposes");
  r2.purpose = "";
  d = p->Decide(r2);
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(d.reasons(0), HasSubstr("must declare one"));
  r2.purpose = "DUO:0000007";
  EXPECT_TRUE(p->Decide(r2).allow());
}

TEST(DecideTest, Sites) {
  auto p = Load();
  v1::Query q = Diabetes();
  AccessRequest r = Req(&q);
  r.sites = {"de"};
  EXPECT_THAT(Reasons(p->Decide(r)), HasSubstr("unknown site \"de\""));
  AccessRequest r2 = Req(&q, kAlice, "two-purposes");
  r2.sites = {"qc"};
  v1::Decision d = p->Decide(r2);
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(Reasons(d), HasSubstr("may not query site qc"));
  // Duplicates collapse.
  r.sites = {"fr", "fr"};
  d = p->Decide(r);
  EXPECT_TRUE(d.allow()) << Reasons(d);
  EXPECT_EQ(d.obligations().sites_size(), 1);
}

TEST(DecideTest, SiteServingOnlySomeProjects) {
  // Quebec serves diabetes-fr-qc only; make two-purposes list qc.
  std::string fed = absl::StrReplaceAll(
      kFederation,
      {{"valid_until: \"2030-01-01\"\n  sites: [\"fr\"]",
        "valid_until: \"2030-01-01\"\n  sites: [\"fr\", \"qc\"]"}});
  auto p = Load(fed);
  v1::Query q = Diabetes();
  AccessRequest r = Req(&q, kAlice, "two-purposes");
  r.sites = {"qc"};
  v1::Decision d = p->Decide(r);
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(Reasons(d), HasSubstr("site qc does not serve project "
                                    "two-purposes"));
  // And the federation forbid rule fires as well.
  EXPECT_THAT(Reasons(d), HasSubstr("deny: forbid no-two-purposes-on-qc"));
}

TEST(DecideTest, MissingSitePolicyIsDenied) {
  auto p = Policy::LoadFromSources(
      {{"federation.textproto", kFederation}, {"site-fr.textproto", kSiteFr}});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT((*p)->warnings(), Contains(HasSubstr("no site policy loaded for "
                                                   "site \"qc\"")));
  v1::Query q = Diabetes();
  v1::Decision d = (*p)->Decide(Req(&q));
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(Reasons(d), HasSubstr("no site policy for site qc"));
}

TEST(DecideTest, ScopeChecksNameTheLevel) {
  auto p = Load();
  v1::Query drug = Q(R"txt(where {
                            criterion {
                              event {
                                event {
                                  domain: DOMAIN_DRUG
                                  codes { vocabulary: "rxnorm" code: "860975" }
                                }
                              }
                            }
                          })txt");
  v1::Decision d = p->Decide(Req(&drug));
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(Reasons(d), HasSubstr("vocabulary \"rxnorm\" is not allowed by "
                                    "the federation (federation.textproto:9)"));
  EXPECT_THAT(Reasons(d), HasSubstr("vocabulary \"rxnorm\" is not allowed by "
                                    "site fr (site-fr.textproto:6)"));

  v1::Query birth =
      Q(R"txt(where { criterion { birth_year { min: 1950 } } })txt");
  EXPECT_THAT(Reasons(p->Decide(Req(&birth))),
              HasSubstr("criterion kind \"birth_year\" is not allowed"));

  // France narrows vocabularies to icd10 and atc; loinc is fine at qc only.
  v1::Query loinc = Q(R"txt(where {
                             criterion {
                               event {
                                 event {
                                   domain: DOMAIN_MEASUREMENT
                                   codes { vocabulary: "loinc" code: "4548-4" }
                                 }
                               }
                             }
                           })txt");
  AccessRequest r = Req(&loinc);
  EXPECT_FALSE(p->Decide(r).allow());
  r.sites = {"qc"};
  EXPECT_TRUE(p->Decide(r).allow()) << Reasons(p->Decide(r));

  // icd10 allowed covers the cim10 variant.
  v1::Query cim = Q(R"txt(where {
                           criterion {
                             event {
                               event {
                                 domain: DOMAIN_CONDITION
                                 codes { vocabulary: "cim10" code: "E11" }
                               }
                             }
                           }
                         })txt");
  EXPECT_TRUE(p->Decide(Req(&cim)).allow());

  v1::Query bad = Q("where { criterion {} }");
  EXPECT_THAT(Reasons(p->Decide(Req(&bad))), HasSubstr("invalid query"));
  AccessRequest none = Req(nullptr);
  EXPECT_THAT(Reasons(p->Decide(none)), HasSubstr("no query"));
}

TEST(DecideTest, DimensionsWidthsAndCells) {
  auto p = Load();
  v1::Query by_site = Diabetes("group_by { kind: SITE }");
  v1::Decision d = p->Decide(Req(&by_site));
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(Reasons(d), HasSubstr("breakdown dimension \"site\" is not "
                                    "allowed by project diabetes-fr-qc"));
  EXPECT_THAT(Reasons(d), HasSubstr("deny: forbid qc-no-site of site qc"));

  v1::Query narrow = Diabetes("group_by { kind: AGE_BAND width: 5 }");
  AccessRequest r = Req(&narrow);
  d = p->Decide(r);
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(Reasons(d), HasSubstr("age_band(5) is narrower than site fr's "
                                    "min_age_band_width 10"));

  v1::Query cells =
      Diabetes("group_by { kind: SEX } group_by { kind: AGE_BAND width: 10 }");
  d = p->Decide(Req(&cells));
  EXPECT_FALSE(d.allow());
  EXPECT_EQ(d.obligations().breakdown_cells(), 48);
  EXPECT_THAT(Reasons(d), HasSubstr("48 cells, more than project "
                                    "diabetes-fr-qc's max_breakdown_cells 24"));
  v1::Query ok = Diabetes("group_by { kind: AGE_BAND width: 10 }");
  EXPECT_TRUE(p->Decide(Req(&ok)).allow());
}

TEST(DecideTest, ForbidOverridesPermit) {
  auto p = Load();
  // The federation and France permit drugs and sequences; France forbids
  // the combination.
  v1::Query seq = Q(R"txt(where {
                           criterion {
                             sequence {
                               first {
                                 domain: DOMAIN_CONDITION
                                 codes { vocabulary: "icd10" code: "E11" }
                               }
                               second {
                                 domain: DOMAIN_DRUG
                                 codes { vocabulary: "atc" code: "A10BA02" }
                               }
                             }
                           }
                         })txt");
  AccessRequest r = Req(&seq);
  v1::Decision d = p->Decide(r);
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(d.reasons(0),
              AllOf(HasSubstr("deny: forbid fr-no-drug-sequences "
                              "of site fr (site-fr.textproto:7)")));
  EXPECT_THAT(Reasons(d), HasSubstr("permit: the query's domains"));
  r.sites = {"qc"};
  EXPECT_TRUE(p->Decide(r).allow()) << Reasons(p->Decide(r));
}

TEST(DecideTest, GuardRailOnMinimumCellSize) {
  // Lower every level to 4: the loader refuses the federation value, so
  // lower the federation's floor rule instead and check the per-site value.
  std::string fed = absl::StrReplaceAll(
      kFederation,
      {{"min_cell_size: 10 mechanism", "min_cell_size: 5 mechanism"},
       {"min_cell_size_below: 5", "min_cell_size_below: 8"}});
  auto loaded = Policy::LoadFromSources({{"federation.textproto", fed},
                                         {"site-fr.textproto", kSiteFr},
                                         {"site-qc.textproto", kSiteQc}});
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(std::string(loaded.status().message()),
              HasSubstr("breaks forbid rule \"floor\""));
  // A rule with another condition is evaluated per request instead.
  fed = absl::StrReplaceAll(
      kFederation,
      {{"min_cell_size: 10 mechanism", "min_cell_size: 5 mechanism"},
       {"min_cell_size_below: 5", "min_cell_size_below: 8 sites: [\"qc\"]"}});
  auto p = Load(fed);
  v1::Query q = Diabetes();
  AccessRequest r = Req(&q);
  v1::Decision d = p->Decide(r);
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(d.reasons(0), HasSubstr("deny: forbid floor (federation."
                                      "textproto:38): no cell below 5, ever"));
  r.sites = {"fr"};  // France's own minimum is 11.
  EXPECT_TRUE(p->Decide(r).allow());
}

TEST(DecideTest, ExactModeNeedsEveryLevelsConsent) {
  std::string fed = absl::StrReplaceAll(
      kFederation,
      {{"epsilon_per_query: 0.5 rounding: 1",
        "epsilon_per_query: 0.5 rounding: 1 exact_mode_allowed: true"},
       {"allow { dimensions: [\"sex\", \"age_band\"] max_breakdown_cells: 24 }",
        "allow { dimensions: [\"sex\", \"age_band\"] max_breakdown_cells: 24 "
        "}\n"
        "  disclosure { mechanism: EXACT }"}});
  std::string qc = absl::StrReplaceAll(
      kSiteQc, {{"epsilon_per_query: 0.25", "exact_mode_allowed: false"}});
  auto p = Load(fed, kSiteFr, qc);
  v1::Query q = Diabetes();
  AccessRequest r = Req(&q);
  r.sites = {"fr"};
  v1::Decision d = p->Decide(r);
  EXPECT_TRUE(d.allow()) << Reasons(d);
  EXPECT_TRUE(d.obligations().exact_mode());
  EXPECT_EQ(d.obligations().mechanism(), v1::Disclosure::EXACT);
  EXPECT_EQ(d.obligations().epsilon_per_query(), 0);
  r.sites = {"qc"};
  d = p->Decide(r);
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(Reasons(d), HasSubstr("site qc does not allow exact mode"));
}

TEST(DecideTest, SiteMechanismConflict) {
  std::string qc = absl::StrReplaceAll(
      kSiteQc,
      {{"epsilon_per_query: 0.25", "mechanism: GAUSSIAN rho_per_query: 0.1"}});
  auto p = Load(kFederation, kSiteFr, qc);
  v1::Query q = Diabetes();
  v1::Decision d = p->Decide(Req(&q));
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(Reasons(d), HasSubstr("site qc requires GAUSSIAN but the "
                                    "project uses LAPLACE"));
}

TEST(DecideTest, WithoutFederationEverythingIsDenied) {
  auto p = Policy::LoadFromSources({{"site-qc.textproto", kSiteQc}});
  ASSERT_TRUE(p.ok());
  v1::Query q = Diabetes();
  v1::Decision d = (*p)->Decide(Req(&q));
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(d.reasons(0), HasSubstr("no federation policy"));
}

v1::CountRequest Count(const v1::Query& q, int64_t min,
                       const std::string& project = "diabetes-fr-qc") {
  v1::CountRequest r;
  *r.mutable_query() = q;
  r.set_project(project);
  r.set_min_cell_size(min);
  return r;
}

TEST(DecideNodeTest, SiteFileAlone) {
  auto loaded = Policy::LoadFromSources({{"site-qc.textproto", kSiteQc}});
  ASSERT_TRUE(loaded.ok());
  const Policy& p = **loaded;
  absl::Time now = Day(2026, 6, 1);
  v1::Query q = Diabetes("group_by { kind: SEX }");
  v1::Decision d = p.DecideNode("qc", kGateway, Count(q, 5), now);
  EXPECT_TRUE(d.allow()) << Reasons(d);
  EXPECT_EQ(d.obligations().min_cell_size(), 5);
  EXPECT_EQ(d.obligations().breakdown_cells(), 4);

  d = p.DecideNode("qc", kAlice, Count(q, 5), now);
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(d.reasons(0), HasSubstr("is not among site qc's callers"));
  d = p.DecideNode("qc", "", Count(q, 5), now);
  EXPECT_FALSE(d.allow());

  d = p.DecideNode("qc", kGateway, Count(q, 4), now);
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(d.reasons(0), HasSubstr("requested min_cell_size 4 is below "
                                      "site qc's minimum 5"));
  d = p.DecideNode("qc", kGateway, Count(q, 0), now);
  EXPECT_FALSE(d.allow());

  d = p.DecideNode("qc", kGateway, Count(q, 5, "other"), now);
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(d.reasons(0), HasSubstr("does not serve project \"other\""));

  d = p.DecideNode("qc", kGateway,
                   Count(Diabetes("group_by { kind: SITE }"), 5), now);
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(Reasons(d), HasSubstr("forbid qc-no-site of site qc"));

  d = p.DecideNode("fr", kGateway, Count(q, 10), now);
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(d.reasons(0), HasSubstr("no site policy for site \"fr\""));
}

TEST(DecideNodeTest, RefusesWhatTheGatewayWouldLetThrough) {
  // Defence in depth: France refuses a vocabulary its policy does not allow,
  // and a narrow age band, whatever the gateway says.
  auto loaded = Policy::LoadFromSources({{"site-fr.textproto", kSiteFr}});
  ASSERT_TRUE(loaded.ok());
  absl::Time now = Day(2026, 6, 1);
  v1::Query q = Q(R"txt(where {
               criterion {
                 event {
                   event {
                     domain: DOMAIN_CONDITION
                     codes { vocabulary: "icd9" code: "250" prefix: true }
                   }
                 }
               }
             })txt");
  v1::Decision d = (*loaded)->DecideNode("fr", kGateway, Count(q, 11), now);
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(Reasons(d), HasSubstr("vocabulary \"icd9\" is not allowed by "
                                    "site fr"));
  d = (*loaded)->DecideNode(
      "fr", kGateway,
      Count(Diabetes("group_by { kind: AGE_BAND width: 5 }"), 11), now);
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(Reasons(d), HasSubstr("narrower than site fr's"));
}

TEST(DecideNodeTest, WithTheFederationLoadedTheStrictestMinimumApplies) {
  auto p = Load();
  absl::Time now = Day(2026, 6, 1);
  v1::Query q = Diabetes();
  v1::Decision d = p->DecideNode("qc", kGateway, Count(q, 5), now);
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(d.reasons(0), HasSubstr("below site qc's minimum 10"));
  EXPECT_TRUE(p->DecideNode("qc", kGateway, Count(q, 10), now).allow());
  d = p->DecideNode("qc", kGateway, Count(q, 10), Day(2027, 2, 1));
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(Reasons(d), HasSubstr("expired"));
}

TEST(DecideRoleTest, ProjectAndFederationRoles) {
  auto p = Load();
  EXPECT_TRUE(
      p->DecideRole(kBob, v1::Member::AUDITOR, "diabetes-fr-qc").allow());
  EXPECT_TRUE(
      p->DecideRole(kCarol, v1::Member::STEWARD, "diabetes-fr-qc").allow());
  v1::Decision d = p->DecideRole(kAlice, v1::Member::AUDITOR, "diabetes-fr-qc");
  EXPECT_FALSE(d.allow());
  EXPECT_THAT(d.reasons(0), HasSubstr("does not have the auditor role in "
                                      "project diabetes-fr-qc"));
  // Dora audits the whole federation.
  d = p->DecideRole(kDora, v1::Member::AUDITOR, "two-purposes");
  EXPECT_TRUE(d.allow());
  EXPECT_THAT(d.reasons(0), HasSubstr("of the federation"));
  EXPECT_TRUE(p->DecideRole(kDora, v1::Member::AUDITOR, "").allow());
  EXPECT_FALSE(p->DecideRole(kBob, v1::Member::AUDITOR, "").allow());
  EXPECT_FALSE(p->DecideRole(kBob, v1::Member::AUDITOR, "nope").allow());
  EXPECT_FALSE(
      p->DecideRole("", v1::Member::AUDITOR, "diabetes-fr-qc").allow());
}

TEST(DecisionStatusTest, CodesFollowTheCause) {
  auto p = Load();
  v1::Query q = Diabetes();
  v1::Decision d = p->Decide(Req(&q));
  EXPECT_EQ(d.code(), 0);
  EXPECT_TRUE(DecisionStatus(d).ok());

  d = p->Decide(Req(&q, "spiffe://passerelle/user/mallory"));
  absl::Status s = DecisionStatus(d);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(s.message()), HasSubstr("unknown identity"));
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr("deny: ")));

  EXPECT_EQ(DecisionStatus(p->Decide(Req(&q, ""))).code(),
            absl::StatusCode::kUnauthenticated);
  v1::Query bad = Q("where { criterion {} }");
  EXPECT_EQ(DecisionStatus(p->Decide(Req(&bad))).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      DecisionStatus(p->DecideNode("qc", "", Count(q, 10), Day(2026, 6, 1)))
          .code(),
      absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(DecisionStatus(
                p->DecideRole(kAlice, v1::Member::AUDITOR, "diabetes-fr-qc"))
                .code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(CallerStatusTest, NonMembersCannotTellWhetherAProjectExists) {
  auto p = Load();
  v1::Query q = Diabetes();
  // Dora is known (a federation member) but not in the project; mallory is
  // unknown: each hears the same for a real project and a made-up one.
  for (const char* who : {kDora, "spiffe://passerelle/user/mallory"}) {
    v1::Decision real = p->Decide(Req(&q, who));
    v1::Decision fake = p->Decide(Req(&q, who, "no-such-project"));
    EXPECT_TRUE(real.outside_project()) << who;
    EXPECT_TRUE(fake.outside_project()) << who;
    absl::Status a = CallerStatus(real, who, "P");
    absl::Status b = CallerStatus(fake, who, "P");
    EXPECT_EQ(a, b) << who;
    EXPECT_EQ(a.code(), absl::StatusCode::kPermissionDenied);
    // The decision itself still says which, for the log and `explain`.
    EXPECT_NE(Reasons(real), Reasons(fake));
  }
  // A member's denial keeps its reasons, without rule locations.
  v1::Decision bob = p->Decide(Req(&q, kBob));
  EXPECT_FALSE(bob.outside_project());
  EXPECT_THAT(Reasons(bob), HasSubstr(".textproto:"));
  absl::Status s = CallerStatus(bob, kBob, "diabetes-fr-qc");
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("only researchers may run queries"));
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr(".textproto")));
  EXPECT_TRUE(CallerStatus(p->Decide(Req(&q)), kAlice, "diabetes-fr-qc").ok());
}

TEST(CallerStatusTest, WithoutLocationsDropsOnlyLocations) {
  EXPECT_EQ(WithoutLocations("deny: x is auditor of project p "
                             "(federation.textproto:12); only researchers"),
            "deny: x is auditor of project p; only researchers");
  EXPECT_EQ(WithoutLocations("deny: a (f.textproto:3:7) b (c:d) (e:12) "
                             "(not a location: 1) \"(q:1)\""),
            "deny: a b (c:d) (not a location: 1) \"(q:1)\"");
}

TEST(DecideTest, ConcurrentDecisionsAgree) {
  auto p = Load();
  v1::Query q = Diabetes("group_by { kind: SEX }");
  v1::Decision expected = p->Decide(Req(&q));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        if (p->Decide(Req(&q)).SerializeAsString() !=
            expected.SerializeAsString()) {
          ++mismatches;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace passerelle::policy

namespace passerelle::policy {
namespace {

// Every noise an allowed decision obliges is in NoiseParameterSets (the
// gateway prewarms exactly those), and the set has nothing else.
TEST(PolicyTest, NoiseParameterSetsCoverEveryAllowedDecision) {
  const std::string fed = std::string(kFederation) + R"txt(
project {
  id: "gaussian"
  purposes: ["DUO:0000006"]
  valid_until: "2030-01-01"
  sites: ["fr"]
  member { identity: "spiffe://passerelle/user/alice" role: RESEARCHER }
  disclosure { mechanism: GAUSSIAN rho_per_query: 0.125 }
  budget { rho_cap: 3 }
}
)txt";
  std::shared_ptr<const Policy> p = Load(fed);
  ASSERT_NE(p, nullptr);
  const std::vector<NoiseParameters> sets = p->NoiseParameterSets();
  std::vector<NoiseParameters> expected(3);
  expected[0].mechanism = v1::Disclosure::LAPLACE;
  expected[0].epsilon = 0.25;  // diabetes-fr-qc asking qc.
  expected[1].mechanism = v1::Disclosure::LAPLACE;
  expected[1].epsilon = 0.5;  // Asking fr only.
  expected[2].mechanism = v1::Disclosure::GAUSSIAN;
  expected[2].rho = 0.125;
  EXPECT_EQ(sets, expected);

  v1::Query q = Diabetes();
  int allowed = 0;
  for (const std::string project :
       {"diabetes-fr-qc", "two-purposes", "gaussian"}) {
    for (const std::vector<std::string>& sites :
         std::vector<std::vector<std::string>>{
             {}, {"fr"}, {"qc"}, {"fr", "qc"}}) {
      AccessRequest r = Req(&q, kAlice, project);
      r.purpose = "DUO:0000006";
      r.sites = sites;
      const v1::Decision d = p->Decide(r);
      if (!d.allow()) continue;
      ++allowed;
      NoiseParameters n;
      n.mechanism = d.obligations().mechanism();
      n.epsilon = d.obligations().epsilon_per_query();
      n.rho = d.obligations().rho_per_query();
      EXPECT_NE(std::find(sets.begin(), sets.end(), n), sets.end())
          << project << " " << absl::StrJoin(sites, ",");
    }
  }
  EXPECT_GE(allowed, 6);
}

}  // namespace
}  // namespace passerelle::policy
