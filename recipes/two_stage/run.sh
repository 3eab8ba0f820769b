#!/usr/bin/env bash
# Two-stage TTS on your own corpus, stage by stage (as ESPnet, icefall and CosyVoice recipes):
#
#   0 filelist    audio folders (+ transcripts beside the audio) -> train / held-out filelists + a test list
#   1 latents     dcae export: DC-AE latents of the training part (manifest.jsonl, stats.json)
#   2 tokens      dcae tokens: speech tokens (S3Tokenizer, or an FSQ tokenizer trained here)
#   3 speakers    dcae speakers: a speaker embedding per utterance and per speaker
#   4 token-lm    python -m tts.train --model token-lm: text -> speech tokens
#   5 token-flow  python -m tts.train --model token-flow: speech tokens -> latents
#   6 synthesis   dcae tts --list: every line of the test list -> synth/<id>.wav
#   7 scores      dcae evaluate --tts-list: WER (with an ASR model), speaker similarity, predicted MOS
#
# Usage (from any folder; outputs go under --exp, relative to where you run it):
#   recipes/two_stage/run.sh --corpus /data/LibriTTS/train-clean-100 [--stage N] [--stop-stage M] [--name value ...]
#   recipes/two_stage/run.sh --config recipes/two_stage/conf/smoke.sh --corpus DIR --ae-model G.pt ...
#   recipes/two_stage/run.sh --help        # every setting with its value
#
# Settings: the defaults below, then the file given with --config (bash, sourced: name=value lines),
# then --name value flags (--stop-stage and --stop_stage are the same), later ones winning. An unknown
# flag is refused. Every stage can be run again: the commands resume (latents, tokens, embeddings,
# checkpoints and audio already made are kept), and stage 0 keeps its lists once written (delete
# EXP/data to redo it). Needs the environment where dcae is installed (dcae and python on PATH).
set -euo pipefail

# ---- settings (name=value  # meaning) --------------------------------------------------------
stage=0                     # first stage to run (0-7)
stop_stage=7                # last stage to run (0-7)
corpus=""                   # audio folder(s), space-separated (stage 0)
transcript_ext=".normalized.txt"  # each X.wav's transcript is the file X<ext> beside it (LibriTTS; .txt, .lab)
speaker_from_folder=true    # speaker id = first folder below a corpus folder (ROOT/SPEAKER/...)
min_duration=1.0            # shorter files are left out (seconds)
test_fraction=0.01          # held out for the test list (at least one file)
seed=0                      # the train/test split, the prompts' choice, training and synthesis
exp=exp/two_stage           # output folder: data/ latents/ fsq/ token-lm/ token-flow/ synth/ scores/
ae_model=""                 # DC-AE generator (empty: the published KdaiP/DC-Speech-VAE weights)
ae_config=""                # its config (a file, or default / tiny)
vocoder=""                  # BigVGAN folder or hub id (empty: nvidia/bigvgan_v2_22khz_80band_256x)
device=""                   # cpu, cuda, cuda:1 ... (empty: each command's default, a GPU when there is one)
precision=""                # fp32 | bf16 | auto (empty: each command's default)
threads=0                   # CPU threads of each command (0: torch's default)
num_workers=""              # audio-decoding worker processes (empty: each command's default)
nj=""                       # probe processes of stage 0 (empty: the CPU cores)
export_format=files         # files | shards (Parquet shards, for large corpora)
tokenizer=s3                # s3 (S3Tokenizer, 25 Hz: the [s3] extra) | fsq (trained in stage 2) | an FSQ run folder
fsq_preset=base             # tiny | base: the FSQ tokenizer trained when tokenizer=fsq
fsq_steps=""                # its training steps (empty: the trainer's default)
speaker_model=resemblyzer   # dcae speakers --encoder: resemblyzer | FILE.onnx | none (skip stage 3)
preset=base                 # tiny | base: token-lm and token-flow presets
lm_steps=""                 # token-lm training steps (empty: the preset's)
flow_steps=""               # token-flow training steps (empty: the preset's)
speaker_encoder=none        # none | learnable (MiniMax-Speech's, trained with both models; list_voice=reference)
list_voice=prompt           # prompt (continue each prompt_wav from its text) | reference (learnable encoder)
asr=""                      # ASR model for stage 7's WER (path or hub id; empty: no WER)
html=false                  # stage 7 also writes the listening page report.html
export_args=""              # extra flags of dcae export
fsq_args=""                 # extra flags of the FSQ tokenizer's training
tokens_args=""              # extra flags of dcae tokens
lm_args=""                  # extra flags of the token-lm training (e.g. --batch-size 32 --bistream true)
flow_args=""                # extra flags of the token-flow training
tts_args=""                 # extra flags of dcae tts (e.g. --steps 10 --top-k 25)
eval_args=""                # extra flags of dcae evaluate
# ---- end of settings -------------------------------------------------------------------------

script="$0"
settings=$(sed -n '/^# ---- settings/,/^# ---- end of settings/p' "$script" | sed -n 's/^\([a-z_][a-z0-9_]*\)=.*/\1/p')

usage() {
  sed -n '2,/^set -euo pipefail/p' "$script" | sed '$d' | sed 's/^# \{0,1\}//'
  echo "Settings (flag, value now, meaning):"
  printf '  --%-20s %-28s %s\n' config "${config:-\"\"}" "a bash file of name=value lines, sourced after the defaults"
  local name
  for name in $settings; do
    printf '  --%-20s %-28s %s\n' "${name//_/-}" "${!name:-\"\"}" \
      "$(sed -n "s/^${name}=[^#]*# //p" "$script")"
  done
}

die() { echo "run.sh: error: $*" >&2; exit 2; }

known() { local name; for name in $settings; do [ "$name" = "$1" ] && return 0; done; return 1; }

# --config first (the flags override what it sets, wherever they stand), then the flags
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --config) [ $((i + 1)) -lt ${#args[@]} ] || die "--config needs a file"; config="${args[i + 1]}"; i=$((i + 1)) ;;
    --config=*) config="${args[i]#--config=}" ;;
  esac
done
if [ -n "${config:-}" ]; then
  [ -f "$config" ] || die "--config $config: no such file"
  # shellcheck source=/dev/null
  . "$config"
fi
show_help=false
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) show_help=true; shift; continue ;;
    --config) shift 2; continue ;;
    --config=*) shift; continue ;;
    --*=*) flag="${1%%=*}"; value="${1#*=}"; shift ;;
    --*) flag="$1"; [ $# -ge 2 ] || die "$flag needs a value"; value="$2"; shift 2 ;;
    *) die "unexpected argument '$1' (settings are given as --name value; --help lists them)" ;;
  esac
  name="${flag#--}"; name="${name//-/_}"
  known "$name" || die "unknown option $flag (--help lists the settings)"
  printf -v "$name" '%s' "$value"
done
if $show_help; then usage; exit 0; fi

# ---- checks and derived values ----------------------------------------------------------------
[[ "$stage" =~ ^[0-7]$ ]] || die "--stage must be 0-7, got '$stage'"
[[ "$stop_stage" =~ ^[0-7]$ ]] || die "--stop-stage must be 0-7, got '$stop_stage'"
[ "$stage" -le "$stop_stage" ] || die "--stage $stage is after --stop-stage $stop_stage"
for name in speaker_from_folder html; do
  case "${!name}" in true | false) ;; *) die "--${name//_/-} must be true or false, got '${!name}'" ;; esac
done
case "$export_format" in files | shards) ;; *) die "--export-format must be files or shards, got '$export_format'" ;; esac
case "$list_voice" in prompt | reference) ;; *) die "--list-voice must be prompt or reference, got '$list_voice'" ;; esac

data="$exp/data"
if [ "$export_format" = shards ]; then manifest="$exp/latents"; else manifest="$exp/latents/manifest.jsonl"; fi
case "$tokenizer" in
  fsq) tokenizer_run="$exp/fsq" ;;
  *) tokenizer_run="$tokenizer" ;;
esac
[[ "$threads" =~ ^[0-9]+$ ]] || die "--threads must be a number, got '$threads'"
if [ "$threads" -gt 0 ]; then
  export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
  train_threads=(--cpu-threads "$threads")
else
  train_threads=()
fi
model=()    # the DC-AE and vocoder flags of every command that loads them
[ -n "$ae_model" ] && model+=(--ae-model "$ae_model")
[ -n "$ae_config" ] && model+=(--ae-config "$ae_config")
[ -n "$vocoder" ] && model+=(--vocoder "$vocoder")
on=()       # --device
[ -n "$device" ] && on+=(--device "$device")
prec=()     # --precision
[ -n "$precision" ] && prec+=(--precision "$precision")
workers=()  # --num-workers
[ -n "$num_workers" ] && workers+=(--num-workers "$num_workers")
# the extra flags, as words
read -ra export_extra <<<"$export_args"; read -ra fsq_extra <<<"$fsq_args"; read -ra tokens_extra <<<"$tokens_args"
read -ra lm_extra <<<"$lm_args"; read -ra flow_extra <<<"$flow_args"; read -ra tts_extra <<<"$tts_args"
read -ra eval_extra <<<"$eval_args"

run() { echo "+ $*"; "$@"; }
header() { echo; echo "==== stage $1: $2 ($(date '+%F %T')) ===="; }
selected() { [ "$stage" -le "$1" ] && [ "$1" -le "$stop_stage" ]; }

# ---- the stages -------------------------------------------------------------------------------
if selected 0; then
  header 0 "filelists and test list -> $data"
  if [ -s "$data/train.txt" ] && [ -s "$data/test.txt" ] && [ -s "$data/test_list.txt" ]; then
    echo "skipped: $data/train.txt, test.txt and test_list.txt exist (delete $data to redo)"
  else
    [ -n "$corpus" ] || die "--corpus: give the audio folder(s) to scan"
    read -ra corpus_dirs <<<"$corpus"
    flags=(--out "$data/train.txt" --val-out "$data/test.txt" --test-list "$data/test_list.txt"
           --val-fraction "$test_fraction" --seed "$seed" --min-duration "$min_duration"
           --transcript-ext "$transcript_ext")
    $speaker_from_folder && flags+=(--speaker-from-folder)
    [ -n "$nj" ] && flags+=(--workers "$nj")
    run dcae filelist --paths "${corpus_dirs[@]}" "${flags[@]}"
  fi
fi

if selected 1; then
  header 1 "latents (dcae export) -> $exp/latents"
  run dcae export --filelist "$data/train.txt" --out "$exp/latents" --format "$export_format" \
    "${model[@]}" "${on[@]}" "${prec[@]}" "${workers[@]}" "${export_extra[@]}"
fi

if selected 2; then
  header 2 "speech tokens (dcae tokens, tokenizer $tokenizer) -> $manifest"
  if [ "$tokenizer" = fsq ]; then
    steps=(); [ -n "$fsq_steps" ] && steps=(--max-steps "$fsq_steps")
    run python -m tts.train --model fsq-tokenizer --filelist "$data/train.txt" --val-filelist "$data/test.txt" \
      --output-dir "$exp/fsq" --preset "$fsq_preset" --seed "$seed" "${steps[@]}" "${train_threads[@]}" \
      "${on[@]}" "${prec[@]}" "${workers[@]}" "${fsq_extra[@]}"
  fi
  run dcae tokens --manifest "$manifest" --tokenizer "$tokenizer_run" "${on[@]}" "${workers[@]}" \
    "${tokens_extra[@]}"
fi

if selected 3; then
  header 3 "speaker embeddings (dcae speakers, $speaker_model) -> $manifest"
  if [ "$speaker_model" = none ]; then
    echo "skipped: speaker_model=none"
  else
    run dcae speakers --manifest "$manifest" --encoder "$speaker_model" "${workers[@]}"
  fi
fi

train_tts() {  # train_tts KIND STEPS EXTRA...: one of the two models, resumed where it stopped
  local kind="$1" max="$2"; shift 2
  local steps=(); [ -n "$max" ] && steps=(--max-steps "$max")
  run python -m tts.train --model "$kind" --manifest "$manifest" --output-dir "$exp/$kind" --preset "$preset" \
    --seed "$seed" --speaker-encoder "$speaker_encoder" "${steps[@]}" "${train_threads[@]}" "${on[@]}" "${prec[@]}" "$@"
}

if selected 4; then
  header 4 "token LM (text -> speech tokens) -> $exp/token-lm"
  train_tts token-lm "$lm_steps" "${lm_extra[@]}"
fi

if selected 5; then
  header 5 "token flow (speech tokens -> latents) -> $exp/token-flow"
  train_tts token-flow "$flow_steps" "${flow_extra[@]}"
fi

if selected 6; then
  header 6 "synthesis of $data/test_list.txt (dcae tts --list, voice: $list_voice) -> $exp/synth"
  voice=(--list-voice "$list_voice")
  [ "$list_voice" = prompt ] && voice+=(--tokenizer "$tokenizer_run")
  run dcae tts --checkpoint "$exp/token-lm" --flow "$exp/token-flow" --list "$data/test_list.txt" -o "$exp/synth" \
    "${voice[@]}" --seed "$seed" "${model[@]}" "${on[@]}" "${prec[@]}" "${tts_extra[@]}"
fi

if selected 7; then
  header 7 "scores (dcae evaluate --tts-list) -> $exp/scores"
  flags=()
  [ -n "$asr" ] && flags+=(--asr "$asr")
  $html && flags+=(--html)
  run dcae evaluate --tts-list "$data/test_list.txt" --generated "$exp/synth" --out "$exp/scores" "${flags[@]}" \
    "${eval_extra[@]}"
fi

echo
echo "done: stages $stage-$stop_stage ($exp)"
