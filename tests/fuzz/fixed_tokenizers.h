// Two small tokenizer.json + tokenizer_config.json pairs of the project's own (the layouts of
// tests/core/text/hf_tokenizer_test.cc, with more merges), shared by the tokenizer fuzz targets.
#pragma once

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/text/hf_pretokenizer.h"

namespace unlearning::fuzz {

struct TokenizerFiles {
  nlohmann::json tokenizer;  // tokenizer.json
  nlohmann::json config;     // tokenizer_config.json
};

inline constexpr char kSentencePieceSpace[] = "\xe2\x96\x81";  // ▁

// Byte-level BPE in the Llama 3 layout: Split with the Llama 3 regex, then ByteLevel. Byte symbols
// 0..255, merges of common English pairs, <|end|> special (the eos token).
inline TokenizerFiles ByteLevelFiles() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[core::hf::ByteToUnicode()[b]] = b;
  nlohmann::json merges = nlohmann::json::array();
  int next = 256;
  const std::string g = core::hf::ByteToUnicode()[' '];  // "Ġ"
  for (const auto& [a, b] : std::vector<std::pair<std::string, std::string>>{{"h", "e"},
                                                                             {"l", "l"},
                                                                             {"he", "ll"},
                                                                             {"hell", "o"},
                                                                             {g, "t"},
                                                                             {g + "t", "he"},
                                                                             {"i", "n"},
                                                                             {"in", "g"},
                                                                             {g, "a"},
                                                                             {"e", "r"},
                                                                             {"1", "2"},
                                                                             {"12", "3"},
                                                                             {"'", "s"}}) {
    if (!vocab.contains(a + b)) vocab[a + b] = next++;
    merges.push_back(a + " " + b);
  }
  const int end_id = next;
  return TokenizerFiles{
      {{"added_tokens", {{{"id", end_id}, {"content", "<|end|>"}, {"special", true}}}},
       {"normalizer", nullptr},
       {"pre_tokenizer",
        {{"type", "Sequence"},
         {"pretokenizers",
          {{{"type", "Split"},
            {"pattern",
             {{"Regex",
               std::string(core::hf::SplitPatternRegex(core::hf::SplitPattern::kLlama3))}}},
            {"behavior", "Isolated"},
            {"invert", false}},
           {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
       {"decoder", {{"type", "ByteLevel"}}},
       {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}},
      {{"eos_token", "<|end|>"}}};
}

// SentencePiece-style BPE with byte fallback in the Llama 2 layout (Prepend + Replace "▁"
// normalizer; Replace, ByteFallback, Fuse, Strip decoder); <unk>, <s>, </s> special.
inline TokenizerFiles ByteFallbackFiles() {
  nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  const std::string s = kSentencePieceSpace;
  int next = 259;
  for (const char* t : {kSentencePieceSpace, "a", "b", "e", "t", "h"}) vocab[t] = next++;
  nlohmann::json merges = nlohmann::json::array();
  for (const auto& [a, b] : std::vector<std::pair<std::string, std::string>>{
           {s, "a"}, {"a", "b"}, {s + "a", "b"}, {s, "t"}, {"h", "e"}, {s + "t", "he"}}) {
    if (!vocab.contains(a + b)) vocab[a + b] = next++;
    merges.push_back(nlohmann::json::array({a, b}));
  }
  return TokenizerFiles{
      {{"added_tokens",
        {{{"id", 0}, {"content", "<unk>"}, {"special", true}},
         {{"id", 1}, {"content", "<s>"}, {"special", true}},
         {{"id", 2}, {"content", "</s>"}, {"special", true}}}},
       {"normalizer",
        {{"type", "Sequence"},
         {"normalizers",
          {{{"type", "Prepend"}, {"prepend", s}},
           {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", s}}}}}},
       {"pre_tokenizer", nullptr},
       {"decoder",
        {{"type", "Sequence"},
         {"decoders",
          {{{"type", "Replace"}, {"pattern", {{"String", s}}}, {"content", " "}},
           {{"type", "ByteFallback"}},
           {{"type", "Fuse"}},
           {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
       {"model",
        {{"type", "BPE"},
         {"vocab", vocab},
         {"merges", merges},
         {"unk_token", "<unk>"},
         {"byte_fallback", true},
         {"fuse_unk", true}}}},
      {{"bos_token", "<s>"}, {"eos_token", "</s>"}}};
}

}  // namespace unlearning::fuzz
