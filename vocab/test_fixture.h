// Test support: a small nomenclature directory laid out like
// ../shared/data, with the real files' headers and quirks (accents, `;` and
// `,` separators, a byte-order mark, quoted fields with line breaks, the
// double quoting of IR_CIM_V, codes no query can carry). Only tests include
// this header.
#ifndef PASSERELLE_VOCAB_TEST_FIXTURE_H_
#define PASSERELLE_VOCAB_TEST_FIXTURE_H_

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace passerelle::vocab::testing {

// A temporary directory, removed with everything in it at destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "pvocab-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

  // Writes `content` to `relative` (creating its folders); returns the path.
  std::string Write(const std::string& relative,
                    const std::string& content) const {
    const std::filesystem::path p = std::filesystem::path(path_) / relative;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
    return p.string();
  }
  void Remove(const std::string& relative) const {
    std::filesystem::remove(std::filesystem::path(path_) / relative);
  }

 private:
  std::string path_;
};

inline constexpr char kCimHeader[] =
    "CIM_COD;CIM_LIB;ALD_030_COD;CAT_CIM_COD;VER_CPT_COD;VER_CPT_DTE;"
    "CAT_TUM_COD;TEC_COL\n";

// Writes the fixture nomenclatures into `dir`.
inline void WriteFixtureNomenclatures(const TempDir& dir) {
  dir.Write(
      "snds/nomenclatures/IR_CIM_V.csv",
      std::string(kCimHeader) +
          "E10;Diabète sucré de type 1;8;E10;V8.0;;;0\n"
          "E11;Diabète sucré de type 2;8;E11;V8.0;;;0\n"
          "E110;Diabète sucré de type 2, avec coma;8;E11;V8.0;;;0\n"
          "E119;Diabète sucré de type 2, sans complication;8;E11;V8.0;;;0\n"
          "M653;\"\"\"Doigt \"\"\"\"à ressort\"\"\"\"\"\"\";99;M65;V8.0;;;0\n"
          "F55+0;Abus d'antidépresseurs;99;F55;V8.0;;;0\n"
          "I10;Hypertension essentielle (primitive);99;I10;V8.0;;;0\n"
          "O24;Diabète sucré au cours de la grossesse;99;O24;V8.0;;;0\n"
          "K21;Reflux gastro-œsophagien;99;K21;V8.0;;;0\n");
  dir.Write("snds/nomenclatures/MS_CIM_V.csv",
            "CIM_COD;CIM_LIC;CIM_LIL;MVT_DTE;MVT_ORI;MVT_TYP;CIM_LIC_OLD;"
            "TEC_COL\n"
            "E11;DIABETE;Diabète  sucré de type 2 (PMSI);;;;;0\n"
            "E14;DIABETE SAI;Diabète   sucré, sans précision;;;;;0\n");
  dir.Write("crosswalks/cms_icd10cm_2018_descriptions.csv",
            "icd10cm,billable,short_description,long_description\n"
            "E11,0,Type 2 diabetes mellitus,Type 2 diabetes mellitus\n"
            "E119,1,Type 2 diabetes mellitus w/o complications,"
            "\"Type 2 diabetes mellitus without complications\"\n"
            "E1165,1,\"Type 2 diabetes w hyperglycemia\","
            "\"Type 2 diabetes mellitus with hyperglycemia\"\n"
            "I10,1,Essential (primary) hypertension,"
            "Essential (primary) hypertension\n");
  dir.Write("crosswalks/cms_icd9cm_v32_dx_descriptions.csv",
            "icd9cm,short_description,long_description\n"
            "25000,DMII wo cmp nt st uncntr,\"Diabetes mellitus without "
            "mention of complication, type II or unspecified type, not stated "
            "as uncontrolled\"\n"
            "4019,Hypertension NOS,Unspecified essential hypertension\n");
  dir.Write("snds/nomenclatures/openmedic_ATC1.csv",
            "ATC1;Libellé ATC1\nA;Système digestif et métabolisme\n");
  dir.Write("snds/nomenclatures/openmedic_ATC2.csv",
            "ATC2;Libellé ATC2\nA10;MEDICAMENTS DU DIABETE\n");
  dir.Write("snds/nomenclatures/openmedic_ATC3.csv",
            "ATC3;Libellé ATC3\nA10B;HYPOGLYCEMIANTS, INSULINES EXCLUES \n");
  dir.Write("snds/nomenclatures/openmedic_ATC4.csv",
            "ATC4;Libellé ATC4\nA10BA;BIGUANIDES \n");
  dir.Write("snds/nomenclatures/openmedic_ATC5.csv",
            "ATC5;Libellé ATC5\nA10BA02;METFORMINE\n"
            "A10B;HYPOGLYCEMIANTS (niveau 3 répété)\n");
  dir.Write("crosswalks/hc_dpd_din_to_atc.csv",
            "din,atc,atc_label,brand_name,drug_code,product_class,dpd_set,"
            "current_status,status_date,source_extract\n"
            "02099233,A10BA02,METFORMIN,GLUCOPHAGE,1,Human,marketed,MARKETED,"
            "2000-01-01,x\n"
            "02242974,A10BA02,Metformin,APO-METFORMIN,2,Human,marketed,"
            "MARKETED,2000-01-01,x\n"
            "02242975,A10BA02,METFORMIN,APO-METFORMIN 850,3,Human,marketed,"
            "MARKETED,2000-01-01,x\n"
            "02242975,A10BA02,METFORMIN,\"METFORMIN, 850 MG\",4,Human,"
            "cancelled,CANCELLED,2000-01-01,x\n"
            "00000019,,,NO ATC PRODUCT,5,Human,cancelled,CANCELLED,"
            "2000-01-01,x\n"
            "02470179,L04AA40*,CLADRIBINE,MAVENCLAD,6,Human,marketed,"
            "MARKETED,2000-01-01,x\n"
            "Not Applicable/non applicable,UNASSIGN,UNASSIGNED,INDIUM,7,Human,"
            "marketed,MARKETED,2000-01-01,x\n");
  dir.Write("crosswalks/fr_bdpm_cip13_to_atc.csv",
            "cip13,cip7,cis,atc,atc_source,denomination,presentation_label,"
            "presentation_status,presentation_commercialisation,"
            "presentation_date,cis_amm_status,cis_commercialisation\n"
            "3400922086965,2208696,62818762,A10BA02,CIS_MITM,\"METFORMINE EG "
            "850 mg, comprimé pelliculé\",plaquette(s) de 30 comprimé(s),"
            "Présentation active,Déclaration de commercialisation,18/04/2025,"
            "Autorisation active,Commercialisée\n");
  dir.Write("snds/nomenclatures/IR_CCAM_V63.csv",
            "\xEF\xBB\xBF\"CAM_PRS_IDE_COD\";\"CAM_PRS_IDE_LIB\";"
            "\"CAM_PRS_RGT\"\n"
            "\"AHQP001\";\"Électromyographie par électrode de surface, sans "
            "enregistrement vidéo\";\"ATM\"\n"
            "\"JANH798\n[A]\";\"Destruction de tumeur rénale par "
            "radiofréquence\";\"ATM\"\n"
            "\"HBLD318\";\"Pose d'une couronne dentaire \nAvec ou sans "
            "recouvrement\";\"PFC\"\n");
  dir.Write("snds/nomenclatures/NU_UCD_R.csv",
            "UCD_UCD_COD;UCD_PCD_COD;UCD_SVT_COD;UCD_INS_TOP;UCD_LAB_NOM;"
            "UCD_DOC_DTE;UCD_DOC_LIB;UCD_DER_MAJ;UCD_DSN_LIB;UCD_CND_LIB;"
            "UCD_OBS_LIB\n"
            "0000009231824;0;0;0;SHIRE FRANCE;14NOV2017:00:00:00;JO;"
            "20NOV2017:00:00:00;CEPROTIN 500 UI/5 ML;poudre et solvant pour "
            "solution injectable;\n");
}

// The repository's ../shared/data, or "" when absent.
inline std::string SharedNomenclatures() {
  const char* src = std::getenv("PASSERELLE_SOURCE_DIR");
  if (src == nullptr) return "";
  const std::filesystem::path dir =
      std::filesystem::path(src) / ".." / "shared" / "data";
  return std::filesystem::exists(dir / "snds" / "nomenclatures" /
                                 "IR_CIM_V.csv")
             ? dir.string()
             : "";
}

}  // namespace passerelle::vocab::testing

#endif  // PASSERELLE_VOCAB_TEST_FIXTURE_H_
