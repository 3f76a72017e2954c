"""`make images-smoke`: the images built with buildah and run with podman as Kubernetes would run them."""
