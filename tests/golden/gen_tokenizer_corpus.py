#!/usr/bin/env python3
"""Writes tests/golden/tokenizer_corpus.jsonl: the text corpus of the tokenizer parity test.

One JSON string per line (so a line may hold newlines, tabs and carriage returns). All text is
generated here from the word lists below with a fixed seed; nothing is downloaded. Categories:
English prose, code, numbers, whitespace runs, emoji (incl. ZWJ sequences, flags, skin tones),
CJK, Hangul, combining marks (precomposed and decomposed), Arabic/Hebrew with direction marks,
other scripts, special-token strings inside text, rare-but-valid code points, and mixtures.

Left out on purpose (documented in docs/tokenizers.md): U+0085 and U+FEFF, on which the reference
(JavaScript regex \\s) and Hugging Face's Rust tokenizers (Unicode White_Space) disagree; and the
long s (U+017F) and Kelvin sign after an apostrophe, which Rust's case-insensitive (?i:'s) folds.

Usage: tests/golden/gen_tokenizer_corpus.py > tests/golden/tokenizer_corpus.jsonl
"""
import json
import random

rng = random.Random(9)

WORDS = ("the a an of to and in is was for on with as by at from that this it be are were has "
         "had have not but or which one all their there can will would about into more other "
         "model models forget forgetting retain retained unlearning request requests server "
         "token tokens tokenizer merge merges language memory author book books novel prize "
         "quickly slowly carefully bright dark river mountain city village garden window "
         "question answer because however although whenever Paris London Tokyo Zürich naïve "
         "café résumé coöperate façade jalapeño Ångström").split()
CONTRACTIONS = ["it's", "don't", "we're", "they've", "I'm", "you'll", "she'd", "IT'S", "DON'T",
                "We'Re", "I'M", "YOU'LL", "O'Brien", "rock'n'roll", "'tis", "'s", "''", "'"]
PUNCT = [".", ",", "!", "?", ";", ":", "...", "—", "–", "-", "(", ")", "\"", "«", "»", "“", "”",
         "‘", "’", "[", "]", "{", "}", "/", "\\", "@", "#", "$", "%", "^", "&", "*", "_", "=",
         "+", "~", "`", "|", "<", ">", "§", "¶", "•", "…", "¿", "¡"]
CODE = [
    "int main(int argc, char** argv) {\n  return 0;\n}",
    "def f(x):\n\tif x > 0:\n\t\treturn x ** 2\n\treturn -x",
    "for (size_t i = 0; i < n; ++i) sum += a[i] * b[i];",
    "const auto it = map.find(key);  // O(1) on average",
    "{\"id\": 42, \"name\": \"unlearn\", \"tags\": [\"a\", \"b\"], \"ok\": true}",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
    "#include <vector>\n#include \"core/text/tokenizer.h\"",
    "x = [i for i in range(10) if i % 2 == 0]",
    "if (a && b || !c) { throw std::runtime_error(\"bad\"); }",
    "    return absl::InvalidArgumentError(absl::StrCat(\"key \", key));",
    "$ cmake -S . -B build -G Ninja && ninja -C build",
    "<div class=\"x\"><p>Hello &amp; welcome</p></div>",
    "fn main() { println!(\"{:?}\", vec![1, 2, 3]); }",
    "lambda_: float = 1e-4  # learning rate",
    "a->b->c; p = &q; *r = 0x7fff'ffff;",
    "echo \"$HOME\" | sed -e 's/a/b/g' > out.txt 2>&1",
    "    \n\t\t  \r\n",
]
EMOJI = ["😀", "😂", "🤖", "🚀", "❤️", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵🇺🇸",
         "1️⃣", "#️⃣", "🧑🏿‍🚀", "👁️‍🗨️", "✨", "🎉🎉🎉", "☕", "⚡️", "🫠", "🥲", "🧠"]
CJK = ["机器学习是人工智能的一个分支。", "我们需要忘记这些数据。", "東京は日本の首都です。",
       "ひらがなとカタカナを混ぜる。", "今日はいい天気ですね！", "模型「遗忘」请求已完成，共１２３条。",
       "漢字かな交じり文", "中文，标点；符号：“引号”（括号）", "ＡＢＣ１２３　全角スペース"]
HANGUL = ["안녕하세요, 세계!", "기계 학습 모델이 데이터를 잊어야 합니다.", "한국어 문장입니다. 123개",
          "ㅋㅋㅋ ㅎㅎ", "서울특별시"]
COMBINING = ["e\u0301", "Cafe\u0301 na\u0308ive", "A\u030angstro\u0308m", "n\u0303",
             "Z\u0335a\u0337l\u0334g\u0336o\u0338", "Tiếng Việt có dấu", "Tie\u0302\u0301ng Vie\u0323\u0302t",
             "a\u0300\u0301\u0302\u0303\u0304", "\u0301leading mark", "क्षत्रिय हिन्दी",
             "ภาษาไทยไม่มีช่องว่าง", "ελληνικά γράμματα", "Ελληνικά ΚΕΦΑΛΑΙΑ", "русский текст, Ёжик"]
RTL = ["مرحبا بالعالم", "النموذج ينسى البيانات ١٢٣ مرة", "שלום עולם", "עברית עם ניקוד: שָׁלוֹם",
       "\u200fمرحبا\u200e hello", "English then עברית then English", "العربية 2024 and ٢٠٢٤",
       "\u202bembedded rtl\u202c", "فارسی: سلام دنیا ۱۲۳"]
SPECIALS = ["<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
            "<|start_header_id|>", "<|end_header_id|>", "<|im_start|>", "<|im_end|>",
            "<|endoftext|>", "<think>", "</think>", "<tool_call>", "<|reserved_special_token_5|>",
            "<|im_", "<s", "</s >", "< s>", "<<s>>", "<|endoftext|><|endoftext|>"]
RARE = ["\u00a0", "\u3000", "\u2028", "\u2029", "\u200b", "\u200d", "\u2060", "\ufffd", "\ufff0",
        "\U0001f9ea", "\U00010348", "\U0010fffd", "\ue000", "\U000f0000", "\x00", "\x01", "\x1b[31m",
        "\x7f", "\u00ad", "\u034f", "\ufe0f", "\u1680", "\u2003", "\u205f", "\u180e",
        "\U0001d400\U0001d401", "\u2160\u2161\u2162", "\u00bd\u00b2\u00b3", "\u0660\u0661", "\u096f",
        "\U0001f1e6", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ﬁ ﬂ ﬀ", "Å", "Ω Ω", "x\u0000y"]
WS = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n", "\n ", " \t ", "\n\n\n",
      "        ", "\r", " \r\n\t", "\n\t\t", "\u00a0 "]


def number():
    k = rng.randrange(8)
    if k == 0:
        return str(rng.randrange(10 ** rng.randrange(1, 12)))
    if k == 1:
        return f"{rng.uniform(-1e4, 1e4):.{rng.randrange(1, 6)}f}"
    if k == 2:
        return f"{rng.randrange(1, 10 ** 9):,}"
    if k == 3:
        return f"{rng.randrange(1900, 2100)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    if k == 4:
        return f"+1 ({rng.randrange(200, 999)}) {rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}"
    if k == 5:
        return f"{rng.uniform(0, 10):.3e}"
    if k == 6:
        return "v" + ".".join(str(rng.randrange(20)) for _ in range(3))
    return f"{rng.randrange(100)}%"


def sentence():
    n = rng.randrange(3, 18)
    words = []
    for i in range(n):
        r = rng.random()
        if r < 0.08:
            words.append(rng.choice(CONTRACTIONS))
        elif r < 0.13:
            words.append(number())
        else:
            w = rng.choice(WORDS)
            if i == 0 or rng.random() < 0.05:
                w = w.capitalize()
            if rng.random() < 0.03:
                w = w.upper()
            words.append(w)
        if rng.random() < 0.1:
            words[-1] += rng.choice(PUNCT)
    return " ".join(words) + rng.choice([".", "!", "?", "", ":", "..."])


def fragment():
    k = rng.randrange(12)
    return [sentence, lambda: rng.choice(CODE), number, lambda: rng.choice(EMOJI),
            lambda: rng.choice(CJK), lambda: rng.choice(HANGUL), lambda: rng.choice(COMBINING),
            lambda: rng.choice(RTL), lambda: rng.choice(SPECIALS), lambda: rng.choice(RARE),
            lambda: rng.choice(WS), lambda: rng.choice(PUNCT) * rng.randrange(1, 5)][k]()


def line(i):
    kind = i % 14
    if kind == 0:
        return " ".join(sentence() for _ in range(rng.randrange(1, 4)))
    if kind == 1:
        return rng.choice(CODE) + rng.choice(["", "\n", "  "]) + rng.choice(CODE)
    if kind == 2:
        return " ".join(number() for _ in range(rng.randrange(1, 8)))
    if kind == 3:
        return rng.choice(WS) + sentence() + rng.choice(WS) + sentence() + rng.choice(WS)
    if kind == 4:
        return "".join(rng.choice(EMOJI) + rng.choice(["", " ", "  "]) for _ in range(rng.randrange(1, 6)))
    if kind == 5:
        return rng.choice(CJK) + rng.choice(["", " "]) + rng.choice(CJK)
    if kind == 6:
        return rng.choice(HANGUL) + " " + sentence()
    if kind == 7:
        return rng.choice(COMBINING) + " " + rng.choice(COMBINING)
    if kind == 8:
        return rng.choice(RTL) + rng.choice([" ", ". ", "\n"]) + rng.choice(RTL)
    if kind == 9:
        return sentence() + rng.choice(["", " "]) + rng.choice(SPECIALS) + rng.choice(["", " ", "\n"]) + sentence()
    if kind == 10:
        return "".join(rng.choice(RARE) for _ in range(rng.randrange(1, 5))) + sentence()
    return "".join(fragment() for _ in range(rng.randrange(2, 9)))


lines = [line(i) for i in range(2400)]
# Fixed edge cases.
lines += ["", " ", "  ", "\n", "\t", "a", "I", "'s", "  leading", "trailing  ", "a  b   c    d",
          " ".join(["word"] * 300), "x" * 500, "1234567890" * 20, "🙂" * 50, "中" * 200,
          "\n".join(sentence() for _ in range(20)), "\t".join(str(i) for i in range(100)),
          "<s><s></s><unk>", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
          "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"]
for text in lines:
    print(json.dumps(text, ensure_ascii=False))
