{#- The build node: where a release's image is built from its git ref and pushed to the cluster
    registry (_modules/release_build.py, saltyard/release/build.py). The Docker engine comes
    with the role (docker is implied); git clones the application's repository. -#}
include:
  - docker

build-git:
  pkg.installed:
    - name: git
