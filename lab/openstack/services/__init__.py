"""One module per OpenStack service of the lab's original controller, each defining its
`Recipe` (see lab.openstack.recipe)."""
