"""djdemo: the demo Django project deployed by the djstack Ansible project."""
