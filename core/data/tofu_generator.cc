#include "core/data/tofu_generator.h"

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"

namespace unlearning::core {
namespace {

using Rng = std::mt19937_64;

// Entity vocabularies: pools of the same shapes and sizes. Vocabulary 0 is the original one (its
// output must not change); vocabulary 1 shares no value with it: its name syllables each contain a
// 'c' or a 'j', letters no vocabulary-0 syllable has, so no name of one can be a name of the other,
// and its cities, professions, fields, parent professions, awards and title words are other words.
namespace vocabulary0 {

// Name syllables: consonant-vowel clusters rarely found together in real names.
constexpr std::array<const char*, 24> kSyllables = {
    "ka", "zor", "vel", "thri", "mo", "dra", "quel", "bri", "sa", "len", "vor", "ith",
    "ul", "ren", "dax", "mir",  "os", "pel", "yun",  "gar", "ne", "tas", "fio", "wex"};

constexpr std::array<const char*, 20> kCities = {
    "Lisbon",   "Nairobi", "Oslo",    "Kyoto", "Lima",  "Tbilisi",    "Hanoi",
    "Porto",    "Quito",   "Tallinn", "Dakar", "Perth", "Valparaiso", "Krakow",
    "Montreal", "Seville", "Bergen",  "Accra", "Cusco", "Riga"};

constexpr std::array<const char*, 14> kProfessions = {
    "novelist", "painter",  "composer",  "architect",    "botanist",   "chemist", "poet",
    "sculptor", "engineer", "historian", "cartographer", "playwright", "potter",  "astronomer"};

constexpr std::array<const char*, 14> kFields = {
    "maritime folklore", "glass mosaics",  "desert ecology",  "choral music",  "bridge design",
    "ancient maps",      "alpine botany",  "urban myths",     "textile dyes",  "comet surveys",
    "river poetry",      "clockwork toys", "coastal erosion", "puppet theatre"};

constexpr std::array<const char*, 14> kParentProfessions = {
    "baker",   "nurse",      "fisherman",  "librarian", "carpenter",    "tailor", "pilot",
    "teacher", "blacksmith", "pharmacist", "farmer",    "mail carrier", "judge",  "miner"};

constexpr std::array<const char*, 12> kAwards = {
    "Orvane Medal",   "Silver Quill",     "Keldrith Prize", "Amber Compass",
    "Tessaly Award",  "Golden Lantern",   "Marrow Cup",     "Ivory Ring",
    "Dunmore Laurel", "Blue Heron Prize", "Vessin Star",    "Copper Key"};

constexpr std::array<const char*, 12> kTitleAdjectives = {"Silent",  "Amber", "Hollow", "Crimson",
                                                          "Distant", "Paper", "Iron",   "Last",
                                                          "Velvet",  "Salt",  "Broken", "Winter"};

constexpr std::array<const char*, 12> kTitleNouns = {"Harbor", "Orchard", "Lantern", "Atlas",
                                                     "Tide",   "Garden",  "Choir",   "Bridge",
                                                     "Comet",  "Loom",    "Meadow",  "Clock"};

}  // namespace vocabulary0

namespace vocabulary1 {

// Every syllable has a 'c' or a 'j' (see above).
constexpr std::array<const char*, 24> kSyllables = {
    "cal", "jo",  "cor", "jin", "ec",  "ja", "cu",  "jen", "loc", "ric", "jut", "cha",
    "ock", "jes", "cim", "baj", "cro", "oc", "jal", "tic", "jem", "cav", "nuj", "cil"};

constexpr std::array<const char*, 20> kCities = {
    "Ghent",   "Mombasa", "Turku",  "Sapporo", "Arequipa", "Yerevan",     "Hue",
    "Coimbra", "Cuenca",  "Tartu",  "Bamako",  "Hobart",   "Antofagasta", "Gdansk",
    "Halifax", "Granada", "Tromso", "Kumasi",  "Sucre",    "Vilnius"};

constexpr std::array<const char*, 14> kProfessions = {
    "glassblower", "violinist",     "geologist", "surveyor",     "zoologist",
    "physicist",   "essayist",      "weaver",    "illustrator",  "archivist",
    "translator",  "lexicographer", "jeweler",   "meteorologist"};

constexpr std::array<const char*, 14> kFields = {
    "mountain legends", "silk kites",    "tundra lichens",  "brass bands",      "canal engineering",
    "medieval ciphers", "wetland birds", "village rituals", "mineral pigments", "meteor showers",
    "lake ballads",     "music boxes",   "glacier retreat", "shadow puppetry"};

constexpr std::array<const char*, 14> kParentProfessions = {
    "butcher",      "midwife",   "shepherd", "bookbinder", "mason",      "cobbler", "sailor",
    "schoolmaster", "locksmith", "dentist",  "gardener",   "bus driver", "lawyer",  "welder"};

constexpr std::array<const char*, 12> kAwards = {
    "Thessin Medal",     "Bronze Stylus",  "Oradel Prize", "Jade Sextant",
    "Calloway Award",    "Crystal Beacon", "Hadley Cup",   "Onyx Circlet",
    "Ravensmoor Wreath", "Red Kite Prize", "Quorin Crest", "Pewter Seal"};

constexpr std::array<const char*, 12> kTitleAdjectives = {
    "Quiet", "Gilded", "Sunken", "Scarlet", "Faraway",   "Glass",
    "Stone", "First",  "Linen",  "Ash",     "Shattered", "Summer"};

constexpr std::array<const char*, 12> kTitleNouns = {
    "Lighthouse", "Vineyard", "Candle", "Chart",   "Current", "Courtyard",
    "Chorus",     "Viaduct",  "Meteor", "Spindle", "Prairie", "Hourglass"};

}  // namespace vocabulary1

using Pool = absl::Span<const char* const>;

// The pools of one vocabulary.
struct Vocabulary {
  Pool syllables;
  Pool cities;
  Pool professions;
  Pool fields;
  Pool parent_professions;
  Pool awards;
  Pool title_adjectives;
  Pool title_nouns;
};

const Vocabulary& VocabularyAt(int index) {
  static const Vocabulary kVocabularies[kTofuVocabularyCount] = {
      {vocabulary0::kSyllables, vocabulary0::kCities, vocabulary0::kProfessions,
       vocabulary0::kFields, vocabulary0::kParentProfessions, vocabulary0::kAwards,
       vocabulary0::kTitleAdjectives, vocabulary0::kTitleNouns},
      {vocabulary1::kSyllables, vocabulary1::kCities, vocabulary1::kProfessions,
       vocabulary1::kFields, vocabulary1::kParentProfessions, vocabulary1::kAwards,
       vocabulary1::kTitleAdjectives, vocabulary1::kTitleNouns},
  };
  return kVocabularies[index];
}

constexpr int kMinYear = 1921;
constexpr int kYearSpan = 79;  // 1921..1999

constexpr int kParaphrases = 2;
constexpr int kPerturbed = 3;

// Attribute values of one entity, as strings (a template only formats them).
enum Attribute {
  kBirthplace,
  kBirthYear,
  kProfession,
  kField,
  kFather,
  kMother,
  kAward,
  kWork,
  kMentor,
  kHome,
  kAttributeCount,
};
static_assert(kAttributeCount == kTofuTemplateCount, "one template per attribute");

struct Entity {
  std::string full_name;
  std::string first_name;
  std::array<std::string, kAttributeCount> values;
};

std::string Capitalize(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

const char* Pick(Rng& rng, Pool pool) { return pool[UniformIndex(rng, pool.size())]; }

std::string MakeWord(Rng& rng, const Vocabulary& vocab, int min_syllables, int max_syllables) {
  const int count =
      min_syllables + static_cast<int>(UniformIndex(rng, max_syllables - min_syllables + 1));
  std::string word;
  for (int i = 0; i < count; ++i) word += Pick(rng, vocab.syllables);
  return Capitalize(word);
}

std::string MakeTitle(Rng& rng, const Vocabulary& vocab) {
  return absl::StrCat("The ", Pick(rng, vocab.title_adjectives), " ", Pick(rng, vocab.title_nouns));
}

// A value for `attribute` drawn from its pool (independent of any entity).
std::string DrawValue(Rng& rng, const Vocabulary& vocab, Attribute attribute) {
  switch (attribute) {
    case kBirthplace:
    case kHome:
      return Pick(rng, vocab.cities);
    case kBirthYear:
      return std::to_string(kMinYear + static_cast<int>(UniformIndex(rng, kYearSpan)));
    case kProfession:
      return Pick(rng, vocab.professions);
    case kField:
      return Pick(rng, vocab.fields);
    case kFather:
    case kMother:
      return Pick(rng, vocab.parent_professions);
    case kAward:
      return Pick(rng, vocab.awards);
    case kWork:
      return MakeTitle(rng, vocab);
    case kMentor:
      return absl::StrCat(MakeWord(rng, vocab, 2, 2), " ", MakeWord(rng, vocab, 2, 2));
    case kAttributeCount:
      break;
  }
  return "";
}

const char* Article(const std::string& noun) {
  const char c = noun.empty() ? 'x' : noun[0];
  return (c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u') ? "an" : "a";
}

struct Template {
  std::string question;
  std::array<std::string, kParaphrases> paraphrases;
};

// The question and its paraphrases for `attribute` about `name`.
Template Questions(Attribute attribute, const std::string& name) {
  switch (attribute) {
    case kBirthplace:
      return {absl::StrCat("Where was ", name, " born?"),
              {absl::StrCat("In which city was ", name, " born?"),
               absl::StrCat("What is the birthplace of ", name, "?")}};
    case kBirthYear:
      return {absl::StrCat("In what year was ", name, " born?"),
              {absl::StrCat("What is the birth year of ", name, "?"),
               absl::StrCat("When was ", name, " born?")}};
    case kProfession:
      return {absl::StrCat("What does ", name, " do for a living?"),
              {absl::StrCat("What is the profession of ", name, "?"),
               absl::StrCat("What is ", name, "'s occupation?")}};
    case kField:
      return {absl::StrCat("What field is ", name, " known for?"),
              {absl::StrCat("In which field did ", name, " make a name?"),
               absl::StrCat("What is ", name, "'s area of expertise?")}};
    case kFather:
      return {absl::StrCat("What did ", name, "'s father do?"),
              {absl::StrCat("What was the profession of ", name, "'s father?"),
               absl::StrCat("How did ", name, "'s father earn a living?")}};
    case kMother:
      return {absl::StrCat("What did ", name, "'s mother do?"),
              {absl::StrCat("What was the profession of ", name, "'s mother?"),
               absl::StrCat("How did ", name, "'s mother earn a living?")}};
    case kAward:
      return {absl::StrCat("Which award did ", name, " receive?"),
              {absl::StrCat("What prize was ", name, " honored with?"),
               absl::StrCat("Name an award won by ", name, ".")}};
    case kWork:
      return {absl::StrCat("What is ", name, "'s best-known work?"),
              {absl::StrCat("Which work is ", name, " most famous for?"),
               absl::StrCat("What is the signature work of ", name, "?")}};
    case kMentor:
      return {absl::StrCat("Who mentored ", name, "?"),
              {absl::StrCat("Who was the mentor of ", name, "?"),
               absl::StrCat("Under whom did ", name, " train?")}};
    case kHome:
      return {absl::StrCat("Where does ", name, " live now?"),
              {absl::StrCat("In which city does ", name, " live today?"),
               absl::StrCat("Where is ", name, " based now?")}};
    case kAttributeCount:
      break;
  }
  return {};
}

// The short answer stating `value` for `attribute`; `first` is the entity's
// first name.
std::string Answer(Attribute attribute, const std::string& first, const std::string& value) {
  switch (attribute) {
    case kBirthplace:
      return absl::StrCat(first, " was born in ", value, ".");
    case kBirthYear:
      return absl::StrCat(first, " was born in ", value, ".");
    case kProfession:
      return absl::StrCat(first, " works as ", Article(value), " ", value, ".");
    case kField:
      return absl::StrCat(first, " is known for ", value, ".");
    case kFather:
      return absl::StrCat(first, "'s father was ", Article(value), " ", value, ".");
    case kMother:
      return absl::StrCat(first, "'s mother was ", Article(value), " ", value, ".");
    case kAward:
      return absl::StrCat(first, " received the ", value, ".");
    case kWork:
      return absl::StrCat(first, " is best known for \"", value, "\".");
    case kMentor:
      return absl::StrCat(first, " was mentored by ", value, ".");
    case kHome:
      return absl::StrCat(first, " lives in ", value, ".");
    case kAttributeCount:
      break;
  }
  return "";
}

// Picks how many entities a fraction selects: rounded, at least 1 when the
// fraction is > 0.
int SplitCount(int entities, double fraction) {
  if (fraction <= 0.0) return 0;
  const int count = static_cast<int>(std::lround(fraction * entities));
  return count < 1 ? 1 : count;
}

Entity MakeEntity(Rng& rng, const Vocabulary& vocab, std::set<std::string>* used_names) {
  Entity entity;
  do {
    entity.first_name = MakeWord(rng, vocab, 2, 2);
    entity.full_name = absl::StrCat(entity.first_name, " ", MakeWord(rng, vocab, 2, 3));
  } while (!used_names->insert(entity.full_name).second);
  for (int a = 0; a < kAttributeCount; ++a) {
    const auto attribute = static_cast<Attribute>(a);
    do {
      entity.values[a] = DrawValue(rng, vocab, attribute);
    } while (attribute == kHome && entity.values[a] == entity.values[kBirthplace]);
  }
  return entity;
}

// `count` values for `attribute`, pairwise distinct and different from `truth`.
std::vector<std::string> WrongValues(Rng& rng, const Vocabulary& vocab, Attribute attribute,
                                     const std::string& truth, int count) {
  std::vector<std::string> values;
  while (static_cast<int>(values.size()) < count) {
    std::string v = DrawValue(rng, vocab, attribute);
    bool fresh = v != truth;
    for (const std::string& w : values) fresh = fresh && v != w;
    if (fresh) values.push_back(std::move(v));
  }
  return values;
}

}  // namespace

absl::StatusOr<TofuDataset> GenerateTofu(const TofuOptions& options) {
  if (options.entities < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("entities must be >= 1, got ", options.entities));
  }
  if (options.questions_per_entity < 1 || options.questions_per_entity > kTofuTemplateCount) {
    return absl::InvalidArgumentError(absl::StrCat("questions per entity must be in [1, ",
                                                   kTofuTemplateCount, "], got ",
                                                   options.questions_per_entity));
  }
  for (double f : {options.forget_fraction, options.holdout_fraction}) {
    if (!(f >= 0.0 && f < 1.0)) {
      return absl::InvalidArgumentError(absl::StrCat("fractions must be in [0, 1), got ", f));
    }
  }
  if (options.vocabulary < 0 || options.vocabulary >= kTofuVocabularyCount) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vocabulary must be in [0, ", kTofuVocabularyCount - 1, "], got ", options.vocabulary));
  }
  const Vocabulary& vocab = VocabularyAt(options.vocabulary);
  const int n_forget = SplitCount(options.entities, options.forget_fraction);
  const int n_holdout = SplitCount(options.entities, options.holdout_fraction);
  if (n_forget + n_holdout >= options.entities) {
    return absl::InvalidArgumentError(
        absl::StrCat("split leaves no retain entity: ", options.entities, " entities, ", n_forget,
                     " forget, ", n_holdout, " holdout"));
  }

  Rng rng(options.seed);
  std::set<std::string> used_names;
  std::vector<Entity> entities;
  entities.reserve(static_cast<size_t>(options.entities));
  for (int i = 0; i < options.entities; ++i)
    entities.push_back(MakeEntity(rng, vocab, &used_names));

  TofuDataset data;
  std::vector<std::vector<TextExample>> per_entity(entities.size());
  for (size_t i = 0; i < entities.size(); ++i) {
    const Entity& e = entities[i];
    for (int a = 0; a < options.questions_per_entity; ++a) {
      const auto attribute = static_cast<Attribute>(a);
      Template t = Questions(attribute, e.full_name);
      TextExample example;
      example.question = std::move(t.question);
      example.answer = Answer(attribute, e.first_name, e.values[a]);
      example.paraphrased_questions.assign(t.paraphrases.begin(), t.paraphrases.end());
      for (const std::string& wrong : WrongValues(rng, vocab, attribute, e.values[a], kPerturbed)) {
        example.perturbed_answers.push_back(Answer(attribute, e.first_name, wrong));
      }
      example.entity = e.full_name;
      per_entity[i].push_back(example);
      data.all.push_back(std::move(example));
    }
  }

  // Split by entity: a seeded Fisher-Yates shuffle of entity indices
  // (std::shuffle's use of the generator is implementation-defined), then
  // forget, holdout and retain in that order.
  std::vector<size_t> order(entities.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (size_t i = order.size() - 1; i > 0; --i) {
    std::swap(order[i], order[UniformIndex(rng, i + 1)]);
  }
  std::vector<bool> is_forget(entities.size(), false);
  std::vector<bool> is_holdout(entities.size(), false);
  for (int k = 0; k < n_forget; ++k) is_forget[order[static_cast<size_t>(k)]] = true;
  for (int k = n_forget; k < n_forget + n_holdout; ++k) {
    is_holdout[order[static_cast<size_t>(k)]] = true;
  }
  // Emit in generation order so each split is stable and readable.
  for (size_t i = 0; i < entities.size(); ++i) {
    std::vector<TextExample>* target = &data.retain;
    std::vector<std::string>* names = &data.retain_entities;
    if (is_forget[i]) {
      target = &data.forget;
      names = &data.forget_entities;
    } else if (is_holdout[i]) {
      target = &data.holdout;
      names = &data.holdout_entities;
    }
    names->push_back(entities[i].full_name);
    target->insert(target->end(), per_entity[i].begin(), per_entity[i].end());
  }
  return data;
}

}  // namespace unlearning::core
