"""The app role's filter: the tag of a build target, the one home of its format."""


def app_target_tag(target):
    """{python: "3.13", arch: x86_64, glibc: "2.41"} -> cp313-x86_64: the name of the target's
    wheelhouse in a release, <app_build_dir>/<release id>/<tag>/ (one per CPython and CPU)."""
    return f"cp{str(target['python']).replace('.', '')}-{target['arch']}"


class FilterModule:
    def filters(self):
        return {"app_target_tag": app_target_tag}
