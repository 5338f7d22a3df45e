#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "policy/policy.h"

namespace passerelle::policy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kFederation[] = R"txt(
  federation {
    id: "test"
    gateway_identity: "spiffe://passerelle/gateway"
    site { id: "fr" }
    site { id: "qc" }
    disclosure { min_cell_size: 10 mechanism: LAPLACE epsilon_per_query: 0.5 }
    allow {
      domains: ["condition"]
      vocabularies: ["icd10"]
      criteria: ["event"]
      dimensions: ["sex"]
    }
  }
  project {
    id: "p1"
    purposes: ["DUO:0000006"]
    valid_from: "2026-01-01"
    valid_until: "2026-12-31"
    sites: ["fr", "qc"]
    member { identity: "spiffe://passerelle/user/alice" role: RESEARCHER }
    budget { epsilon_cap: 10 }
  }
  forbid { id: "floor" min_cell_size_below: 5 }
)txt";

constexpr char kSiteFr[] = R"txt(
  site {
    id: "fr"
    callers: ["spiffe://passerelle/gateway"]
    disclosure { min_cell_size: 10 }
  }
)txt";

constexpr char kSiteQc[] = R"txt(
  site {
    id: "qc"
    callers: ["spiffe://passerelle/gateway"]
    disclosure { min_cell_size: 5 }
  }
)txt";

absl::StatusOr<std::shared_ptr<const Policy>> LoadWith(
    const std::string& federation, const std::string& fr = kSiteFr,
    const std::string& qc = kSiteQc) {
  return Policy::LoadFromSources({{"federation.textproto", federation},
                                  {"site-fr.textproto", fr},
                                  {"site-qc.textproto", qc}});
}

std::string Errors(const std::string& federation,
                   const std::string& fr = kSiteFr,
                   const std::string& qc = kSiteQc) {
  auto p = LoadWith(federation, fr, qc);
  EXPECT_FALSE(p.ok());
  if (p.ok()) return "";
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(p.status().message());
}

std::string Replace(const std::string& s, absl::string_view from,
                    absl::string_view to) {
  EXPECT_NE(s.find(std::string(from)), std::string::npos) << from;
  return absl::StrReplaceAll(s, {{from, to}});
}

TEST(LoaderTest, LoadsAValidPolicy) {
  auto p = LoadWith(kFederation);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE((*p)->has_federation());
  ASSERT_NE((*p)->FindProject("p1"), nullptr);
  EXPECT_EQ((*p)->FindProject("p1")->member_size(), 1);
  ASSERT_NE((*p)->FindSite("qc"), nullptr);
  EXPECT_EQ((*p)->FindSite("qc")->disclosure().min_cell_size(), 5);
  EXPECT_EQ((*p)->FindProject("nope"), nullptr);
  EXPECT_THAT((*p)->warnings(), IsEmpty());
  EXPECT_EQ((*p)->version().size(), 64u);
}

TEST(LoaderTest, VersionIsTheHashOfTheFilesInPathOrder) {
  auto a = Policy::LoadFromSources({{"b.textproto", kSiteFr},
                                    {"a.textproto", kFederation},
                                    {"c.textproto", kSiteQc}});
  auto b = Policy::LoadFromSources({{"c.textproto", kSiteQc},
                                    {"a.textproto", kFederation},
                                    {"b.textproto", kSiteFr}});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*a)->version(), (*b)->version());
  EXPECT_EQ((*a)->version(), PolicyVersion({{"a.textproto", kFederation},
                                            {"b.textproto", kSiteFr},
                                            {"c.textproto", kSiteQc}}));
  // One byte more (a comment) is a new version.
  auto c = Policy::LoadFromSources({{"a.textproto", kFederation},
                                    {"b.textproto", std::string(kSiteFr) + "#"},
                                    {"c.textproto", kSiteQc}});
  ASSERT_TRUE(c.ok());
  EXPECT_NE((*a)->version(), (*c)->version());
  // SHA-256 of no input at all, as a sanity check of the encoding.
  EXPECT_EQ(PolicyVersion({}),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(LoaderTest, SyntaxErrorsNameFileLineAndColumn) {
  std::string e =
      Errors(Replace(kFederation, "  valid_from:", "  valid_form:"));
  EXPECT_THAT(e, HasSubstr("federation.textproto:18:"));
  EXPECT_THAT(e, HasSubstr("valid_form"));
  e = Errors(kFederation, kSiteFr,
             Replace(kSiteQc, "min_cell_size: 5", "min_cell_size: \"five\""));
  EXPECT_THAT(e, HasSubstr("site-qc.textproto:5:"));
  e = Errors(Replace(kFederation, "role: RESEARCHER", "role: OWNER"));
  EXPECT_THAT(e, HasSubstr("federation.textproto:21:"));
  EXPECT_THAT(e, HasSubstr("OWNER"));
  // A non-repeated field given twice.
  e = Errors(Replace(kFederation, "id: \"p1\"", "id: \"p1\" id: \"p2\""));
  EXPECT_THAT(e, HasSubstr("federation.textproto:16:"));
}

TEST(LoaderTest, DuplicateIdsAreErrorsWhereTheSecondOneIs) {
  std::string e = Errors(std::string(kFederation) +
                         "project { id: \"p1\" purposes: [\"DUO:0000006\"] "
                         "valid_until: \"2026-12-31\" sites: [\"fr\"] budget "
                         "{ epsilon_cap: 1 } }\n");
  EXPECT_THAT(e, HasSubstr("federation.textproto:25:"));
  EXPECT_THAT(e, HasSubstr("duplicate project id \"p1\""));
  e = Errors(kFederation, kSiteFr, Replace(kSiteQc, "\"qc\"", "\"fr\""));
  EXPECT_THAT(e, HasSubstr("site-qc.textproto:3:"));
  EXPECT_THAT(e, HasSubstr("duplicate site policy \"fr\""));
  e = Errors(Replace(kFederation, "site { id: \"qc\" }",
                     "site { id: \"qc\" } site { id: \"qc\" }"));
  EXPECT_THAT(e, HasSubstr("duplicate site id \"qc\""));
  e = Errors(std::string(kFederation) +
             "forbid { id: \"floor\" sites: [\"qc\"] }");
  EXPECT_THAT(e, HasSubstr("duplicate forbid rule id \"floor\""));
  e = Errors(Replace(kFederation, "role: RESEARCHER }",
                     "role: RESEARCHER }\n  member { identity: "
                     "\"spiffe://passerelle/user/alice\" role: RESEARCHER }"));
  EXPECT_THAT(e, HasSubstr("listed twice"));
}

TEST(LoaderTest, RejectsUnknownRolesAndNonPositiveEpsilon) {
  std::string e = Errors(Replace(kFederation, "role: RESEARCHER", "role: 7"));
  EXPECT_THAT(e, HasSubstr("member needs a role"));
  e = Errors(Replace(kFederation, " role: RESEARCHER", ""));
  EXPECT_THAT(e, HasSubstr("federation.textproto:21:"));
  EXPECT_THAT(e, HasSubstr("member needs a role"));
  e = Errors(
      Replace(kFederation, "epsilon_per_query: 0.5", "epsilon_per_query: 0"));
  EXPECT_THAT(e, HasSubstr("federation.textproto:7:"));
  EXPECT_THAT(e, HasSubstr("epsilon_per_query must be a finite number > 0"));
  e = Errors(
      Replace(kFederation, "epsilon_per_query: 0.5", "epsilon_per_query: -1"));
  EXPECT_THAT(e, HasSubstr("epsilon_per_query must be"));
  e = Errors(
      Replace(kFederation, "epsilon_per_query: 0.5", "epsilon_per_query: inf"));
  EXPECT_THAT(e, HasSubstr("epsilon_per_query must be"));
  e = Errors(Replace(kFederation, "epsilon_cap: 10", "epsilon_cap: 0"));
  EXPECT_THAT(e, HasSubstr("epsilon_cap must be"));
  e = Errors(Replace(kFederation, "epsilon_cap: 10", "epsilon_cap: 0.1"));
  EXPECT_THAT(e, HasSubstr("below one query's epsilon 0.5"));
  e = Errors(Replace(kFederation, " mechanism: LAPLACE", ""));
  EXPECT_THAT(e, HasSubstr("needs a mechanism"));
  e = Errors(Replace(kFederation, "member {",
                     "member { role: RESEARCHER }\n  member {"),
             kSiteFr, kSiteQc);
  EXPECT_THAT(e, HasSubstr("member without identity"));
}

TEST(LoaderTest, RejectsInvertedAndMalformedDates) {
  std::string e = Errors(Replace(kFederation, "valid_from: \"2026-01-01\"",
                                 "valid_from: \"2027-01-01\""));
  EXPECT_THAT(e, HasSubstr("federation.textproto:19:"));
  EXPECT_THAT(e, HasSubstr("valid_until 2026-12-31 is before valid_from "
                           "2027-01-01"));
  e = Errors(Replace(kFederation, "\"2026-12-31\"", "\"2026-13-01\""));
  EXPECT_THAT(e, HasSubstr("is not a date"));
  e = Errors(Replace(kFederation, "valid_until: \"2026-12-31\"", ""));
  EXPECT_THAT(e, HasSubstr("needs valid_until"));
}

TEST(LoaderTest, RejectsReferencesToUnknownProjectsAndSites) {
  std::string e = Errors(Replace(kFederation, "sites: [\"fr\", \"qc\"]",
                                 "sites: [\"fr\", \"de\"]"));
  EXPECT_THAT(e, HasSubstr("federation.textproto:20:"));
  EXPECT_THAT(e, HasSubstr("unknown site \"de\""));
  e = Errors(kFederation,
             Replace(kSiteFr, "callers:", "projects: [\"p9\"] callers:"));
  EXPECT_THAT(e, HasSubstr("site-fr.textproto:4:"));
  EXPECT_THAT(e, HasSubstr("unknown project \"p9\""));
  e = Errors(std::string(kFederation) +
             "forbid { id: \"x\" projects: [\"p9\"] }\n");
  EXPECT_THAT(e, HasSubstr("unknown project \"p9\""));
  e = Errors(kFederation, kSiteFr,
             Replace(kSiteQc, "id: \"qc\"", "id: \"de\""));
  EXPECT_THAT(e, HasSubstr("\"de\" is not a site of the federation"));
}

TEST(LoaderTest, RejectsUnknownNamesInScopesAndRules) {
  std::string e = Errors(Replace(kFederation, "domains: [\"condition\"]",
                                 "domains: [\"condition\", \"conditon\"]"));
  EXPECT_THAT(e, HasSubstr("federation.textproto:9:"));
  EXPECT_THAT(e, HasSubstr("unknown domain \"conditon\""));
  e = Errors(Replace(kFederation, "vocabularies: [\"icd10\"]",
                     "vocabularies: [\"icd11\"]"));
  EXPECT_THAT(e, HasSubstr("unknown vocabulary \"icd11\""));
  e = Errors(Replace(kFederation, "dimensions: [\"sex\"]",
                     "dimensions: [\"region\"]"));
  EXPECT_THAT(e, HasSubstr("unknown dimension \"region\""));
  e = Errors(std::string(kFederation) + "forbid { id: \"empty\" }\n");
  EXPECT_THAT(e, HasSubstr("forbid rule \"empty\" has no condition"));
  e = Errors(Replace(kFederation, "DUO:0000006", "HMB"));
  EXPECT_THAT(e, HasSubstr("\"HMB\" is not a DUO code"));
}

TEST(LoaderTest, RejectsAConfigurationThatBreaksAGuardRail) {
  std::string e = Errors(Replace(kFederation, "min_cell_size: 10 mechanism",
                                 "min_cell_size: 3 mechanism"));
  EXPECT_THAT(e, HasSubstr("federation min_cell_size 3 breaks forbid rule "
                           "\"floor\""));
}

TEST(LoaderTest, StructuralErrors) {
  // In one file the parser refuses it; across files the loader does.
  std::string e =
      Errors(std::string(kFederation) + "federation { id: \"again\" }\n");
  EXPECT_THAT(e, HasSubstr("federation.textproto:25:"));
  EXPECT_THAT(e, HasSubstr("\"federation\" is specified multiple times"));
  e = Errors(kFederation, kSiteFr,
             std::string(kSiteQc) + "federation { id: \"again\" }\n");
  EXPECT_THAT(e, HasSubstr("site-qc.textproto:7:1: a second federation block "
                           "(the first is at federation.textproto:2)"));
  e = Errors(
      kFederation,
      Replace(kSiteFr, "callers: [\"spiffe://passerelle/gateway\"]", ""));
  EXPECT_THAT(e, HasSubstr("lists no callers"));
  e = Errors(Replace(kFederation, "budget { epsilon_cap: 10 }", ""));
  EXPECT_THAT(e, HasSubstr("needs a budget"));
  // Stewards may be members of a project; researchers may not be members of
  // the federation.
  EXPECT_TRUE(LoadWith(Replace(kFederation, "role: RESEARCHER",
                               "role: RESEARCHER } member { identity: \"x\" "
                               "role: STEWARD"))
                  .ok());
  e = Errors(Replace(kFederation, "  site { id: \"fr\" }",
                     "  member { identity: \"z\" role: RESEARCHER }\n"
                     "  site { id: \"fr\" }"));
  EXPECT_THAT(e, HasSubstr("researchers are members of a project"));
  // Projects need the federation block in the same set.
  auto p = Policy::LoadFromSources(
      {{"p.textproto", "project { id: \"x\" }"}, {"s.textproto", kSiteFr}});
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(std::string(p.status().message()),
              HasSubstr("need the federation block"));
}

TEST(LoaderTest, ASiteFileLoadsAlone) {
  // A node loads only its own site policy.
  auto p = Policy::LoadFromSources({{"site-qc.textproto", kSiteQc}});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE((*p)->has_federation());
  EXPECT_NE((*p)->FindSite("qc"), nullptr);
}

TEST(LoaderTest, WarnsWhenASiteDoesNotAnswerTheGateway) {
  auto p = LoadWith(kFederation, Replace(kSiteFr, "spiffe://passerelle/gateway",
                                         "spiffe://passerelle/other"));
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ((*p)->warnings().size(), 1u);
  EXPECT_THAT((*p)->warnings()[0], HasSubstr("does not answer the gateway"));
}

TEST(LoaderTest, WarnsAboutMinimumsBelowAGuardRail) {
  auto p = LoadWith(kFederation, kSiteFr,
                    Replace(kSiteQc, "min_cell_size: 5", "min_cell_size: 3"));
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ((*p)->warnings().size(), 1u);
  EXPECT_THAT((*p)->warnings()[0],
              HasSubstr("site-qc.textproto:2: site \"qc\" min_cell_size 3 is "
                        "below forbid rule \"floor\""));
}

TEST(LoaderTest, ShippedDemoPolicyIsValid) {
  const char* src = std::getenv("PASSERELLE_SOURCE_DIR");
  if (src == nullptr) GTEST_SKIP() << "PASSERELLE_SOURCE_DIR is not set";
  auto p = Policy::Load({std::string(src) + "/deploy/policy"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->files().size(), 3u);
  EXPECT_THAT((*p)->warnings(), IsEmpty());
  EXPECT_NE((*p)->FindProject("diabetes-fr-qc"), nullptr);
}

TEST(LoaderTest, ShippedSiteFilesLoadAloneAsANodeLoadsThem) {
  const char* src = std::getenv("PASSERELLE_SOURCE_DIR");
  if (src == nullptr) GTEST_SKIP() << "PASSERELLE_SOURCE_DIR is not set";
  for (const char* site : {"fr", "qc"}) {
    auto p = Policy::Load(
        {absl::StrCat(src, "/deploy/policy/site-", site, ".textproto")});
    ASSERT_TRUE(p.ok()) << site << ": " << p.status();
    EXPECT_FALSE((*p)->has_federation());
    ASSERT_NE((*p)->FindSite(site), nullptr);
    EXPECT_THAT((*p)->FindSite(site)->callers(),
                ::testing::ElementsAre("spiffe://passerelle/gateway"));
  }
}

TEST(LoaderTest, MissingPathsAndEmptyDirectories) {
  auto p = Policy::Load({"/nonexistent/policy"});
  EXPECT_EQ(p.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Policy::LoadFromSources({}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LoaderTest, SiteAuditorsAndProjectIds) {
  auto p = LoadWith(kFederation,
                    Replace(kSiteFr, "disclosure {",
                            "auditors: [\"spiffe://passerelle/user/erin\"]\n"
                            "    disclosure {"));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT((*p)->FindSite("fr")->auditors(),
              ElementsAre("spiffe://passerelle/user/erin"));
  EXPECT_THAT((*p)->FindSite("qc")->auditors(), IsEmpty());
  EXPECT_THAT((*p)->ProjectIds(), ElementsAre("p1"));
  std::string e = Errors(
      kFederation, Replace(kSiteFr, "disclosure {",
                           "auditors: [\"a\", \"\", \"a\"] disclosure {"));
  EXPECT_THAT(e, HasSubstr("empty auditor"));
  EXPECT_THAT(e, HasSubstr("auditor \"a\" listed twice"));
}

TEST(LoaderTest, ParsesPolicyTimes) {
  auto t = ParsePolicyTime("2026-11-22");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t,
            absl::FromCivil(absl::CivilDay(2026, 11, 22), absl::UTCTimeZone()));
  auto t2 = ParsePolicyTime("2026-11-22T10:00:00+01:00");
  ASSERT_TRUE(t2.ok());
  EXPECT_EQ(*t2 - *t, absl::Hours(9));
  EXPECT_FALSE(ParsePolicyTime("22/11/2026").ok());
  EXPECT_EQ(ParseRole("Auditor"), v1::Member::AUDITOR);
  EXPECT_FALSE(ParseRole("owner").has_value());
}

}  // namespace
}  // namespace passerelle::policy

namespace passerelle::policy {
namespace {

// A positive cap below the ledger's micro-unit resolution rounded down to
// 0, which the ledger read as "no cap".
TEST(LoaderTest, RejectsACapBelowTheLedgersResolutionWithFileAndLine) {
  std::string e = Errors(Replace(kFederation, "budget { epsilon_cap: 10 }",
                                 "budget { epsilon_cap: 10 rho_cap: 0.0000005 "
                                 "}"));
  EXPECT_THAT(e, HasSubstr("federation.textproto:22:"));
  EXPECT_THAT(e, HasSubstr("rho_cap 5e-07 is below the ledger's resolution "
                           "of 0.000001"));
  e = Errors(Replace(kFederation, "budget { epsilon_cap: 10 }",
                     "budget { epsilon_cap: 10 researcher_epsilon_cap: "
                     "0.0000009 }"));
  EXPECT_THAT(e, HasSubstr("researcher_epsilon_cap 9e-07 is below"));
  // One micro-unit is a cap (too small for one query here, but not 0).
  e = Errors(Replace(kFederation, "budget { epsilon_cap: 10 }",
                     "budget { epsilon_cap: 10 rho_cap: 0.000001 }"));
  EXPECT_THAT(e, Not(HasSubstr("resolution")));
  EXPECT_THAT(e, HasSubstr("is below one query's rho"));
}

TEST(LoaderTest, FederationResearcherBudgetIsValidatedAndObliged) {
  const std::string with =
      Replace(kFederation, "    allow {\n      domains",
              "    researcher_budget { researcher_epsilon_cap: 2 "
              "reset_period_days: 30 }\n    allow {\n      domains");
  auto p = LoadWith(with);
  ASSERT_TRUE(p.ok()) << p.status();
  v1::Query query;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      R"txt(where {
              criterion {
                event {
                  event {
                    domain: DOMAIN_CONDITION
                    codes { vocabulary: "icd10" code: "E11" prefix: true }
                  }
                }
              }
            })txt",
      &query));
  AccessRequest req;
  req.identity = "spiffe://passerelle/user/alice";
  req.project = "p1";
  req.query = &query;
  req.now = absl::FromCivil(absl::CivilDay(2026, 6, 1), absl::UTCTimeZone());
  const v1::Decision d = (*p)->Decide(req);
  ASSERT_TRUE(d.allow()) << absl::StrJoin(d.reasons(), "; ");
  EXPECT_EQ(d.obligations().federation_budget().researcher_epsilon_cap(), 2);
  EXPECT_EQ(d.obligations().federation_budget().reset_period_days(), 30);

  std::string e = Errors(
      Replace(with, "researcher_budget { researcher_epsilon_cap: 2",
              "researcher_budget { epsilon_cap: 2 researcher_epsilon_cap: 2"));
  EXPECT_THAT(e, HasSubstr("epsilon_cap does not apply to the federation's "
                           "researcher_budget"));
  e = Errors(Replace(with, "researcher_epsilon_cap: 2 ",
                     "researcher_epsilon_cap: 0.0000001 "));
  EXPECT_THAT(e, HasSubstr("below the ledger's resolution"));
  e = Errors(Replace(with, "researcher_epsilon_cap: 2 ", ""));
  EXPECT_THAT(e, HasSubstr("researcher_budget needs researcher_epsilon_cap"));
}

}  // namespace
}  // namespace passerelle::policy
