#!/bin/sh
# Seed an empty model repository with the models bundled in the serving image, so that pods on a
# fresh volume become ready without anyone copying a model in by hand. A repository holding
# anything (the trainer's versions, operators' decisions) is left exactly as it is. Each model is
# copied to a hidden staging folder first (the servers skip dot-names) and renamed into place, so
# no server reads half a version; of two pods seeding at once, one rename wins. A staging folder
# that a killed pod left behind does not count as content.
# Usage: seed-models REPOSITORY [BUNDLED]    (BUNDLED: /app/models, the serving image's models)
set -eu
repository=${1:?usage: seed-models REPOSITORY [BUNDLED]}
bundled=${2:-/app/models}
if [ -n "$(ls -A "$repository" | grep -vxE 'lost\+found|\.seed-.*')" ]; then
  echo "seed-models: $repository is not empty; left as it is"
  exit 0
fi
staging="$repository/.seed-${HOSTNAME:-local}-$$"
mkdir "$staging"
cp -R "$bundled"/. "$staging"/
for model in "$staging"/*; do
  name=$(basename "$model")
  if mv -T "$model" "$repository/$name" 2>/dev/null; then
    echo "seed-models: $repository/$name seeded from $bundled"
  fi
done
rm -rf "$staging"
