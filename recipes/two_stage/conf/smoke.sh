# CPU smoke run of the whole recipe in a few minutes on 2 cores: tiny models, a few training steps,
# one thread per command. The published DC-AE and BigVGAN cannot be fetched offline, so give
# --ae-model/--ae-config/--vocoder (e.g. a tiny random DC-AE and a small random BigVGAN, made as in
# recipes/two_stage/README.md) and --corpus on the command line:
#   recipes/two_stage/run.sh --config recipes/two_stage/conf/smoke.sh --corpus DIR --transcript-ext .txt \
#       --ae-model tiny/generator.pt --ae-config tiny --vocoder tiny/bigvgan --exp exp/smoke
# Quality is not the point: it checks that every stage runs and hands the next one what it needs.
# shellcheck disable=SC2034  # settings, read by run.sh
min_duration=0.5
test_fraction=0.15
device=cpu
precision=fp32
threads=1
num_workers=0
nj=1
tokenizer=fsq
fsq_preset=tiny
fsq_steps=20
fsq_args="--batch-size 8 --warmup-steps 5 --log-interval 10 --save-interval 20 --val-interval 20 --val-num-clips 4"
preset=tiny
lm_steps=30
flow_steps=30
lm_args="--batch-size 8 --warmup-steps 5 --log-interval 10 --save-interval 30"
flow_args="--batch-size 8 --warmup-steps 5 --log-interval 10 --save-interval 30"
tts_args="--steps 4"
