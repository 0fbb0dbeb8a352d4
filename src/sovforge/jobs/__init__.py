"""Jobs: run any recipe stage (or a whole recipe, or a sovforge verb) on the GPU service's engines.

    sovforge jobs submit RECIPE --stage adapt --engine ray|slurm|kueue|local --tenant T --gpus N

sovforge describes and submits work; the engine (Ray, Slurm, Kubernetes + Kueue) schedules it. Modules:
`config` (tenants.yaml, JobSpec), `policy` (quota/clearance gate), `engine` (the executor interface and the one
command every engine runs), `runner` (that command's wrapper on the worker), `local`/`ray`/`slurm`/`kueue`
(executors), `records` (job directories), `service` (submit/track/account), `cli`.
"""
